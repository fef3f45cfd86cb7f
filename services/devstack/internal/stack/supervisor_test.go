package stack

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/finsvc/finance/pkg/stacktest"
	"github.com/finsvc/finance/pkg/testkit"
)

func writeScript(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "child.sh")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// setup returns a supervisor of its own state directory, and what its
// children and itself print.
func setup(t *testing.T) (*supervisor, *stacktest.Buffer) {
	t.Helper()
	out := &stacktest.Buffer{}
	sup, err := newSupervisor(out, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return sup, out
}

func TestSupervisorRestartsADeadProcessAndLogsIt(t *testing.T) {
	t.Parallel()
	sup, out := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	// The child prints a line and dies at once, as a crashing service would.
	script := writeScript(t, `echo "hello from child"; exit 3`)
	if err := sup.start(ctx, proc{name: "crashy", path: script, stopGrace: time.Second}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "two restarts", func() bool { return strings.Count(out.String(), "crashy restarted") >= 2 })
	cancel()
	sup.wait()

	got := out.String()
	for _, want := range []string{"[crashy] hello from child", "crashy exited (exit status 3); restarting in"} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
}

// Quiet, a child's output goes to its log file only, so the "exited" line
// carries the child's last line: why a service keeps failing shows in the
// stack's own output (a test's failure message), not only in a log file.
func TestQuietSupervisorSaysWhyAProcessExited(t *testing.T) {
	t.Parallel()
	sup, out := setup(t)
	sup.quiet = true
	ctx, cancel := context.WithCancel(context.Background())
	script := writeScript(t, `echo "starting"; echo "listen tcp 127.0.0.1:9103: bind: address already in use" >&2; exit 1`)
	if err := sup.start(ctx, proc{name: "crashy", path: script, stopGrace: time.Second}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "a restart", func() bool { return strings.Contains(out.String(), "crashy restarted") })
	cancel()
	sup.wait()

	got := out.String()
	want := "crashy exited (exit status 1; its last line: listen tcp 127.0.0.1:9103: bind: address already in use); restarting in"
	if !strings.Contains(got, want) {
		t.Errorf("output lacks %q:\n%s", want, got)
	}
	if strings.Contains(got, "[crashy]") {
		t.Errorf("quiet, the child's lines reached the terminal:\n%s", got)
	}
}

// lastLine reads the end of a log file, only what came after the offset
// it is given, and at most maxLastLine bytes of it.
func TestLastLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.log")
	write := func(s string) int64 {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteString(s); err != nil {
			t.Fatal(err)
		}
		return fileSize(f)
	}
	end := write("an earlier process\n")
	if got := lastLine(path, end); got != "" {
		t.Errorf("nothing written since the offset: %q, want \"\"", got)
	}
	write("first\nsecond\n\n  \n")
	if got := lastLine(path, end); got != "second" {
		t.Errorf("after complete lines: %q, want %q", got, "second")
	}
	write("panic: boom")
	if got := lastLine(path, end); got != "panic: boom" {
		t.Errorf("with an unfinished line: %q, want %q", got, "panic: boom")
	}
	write(strings.Repeat("x", 2*maxLastLine) + "\n")
	if got := lastLine(path, 0); len(got) != maxLastLine {
		t.Errorf("a long line: kept %d bytes, want %d", len(got), maxLastLine)
	}
}

func TestSupervisorStopsWithSIGTERM(t *testing.T) {
	t.Parallel()
	sup, out := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	script := writeScript(t, `trap 'echo "got TERM"; exit 0' TERM; echo ready; while :; do sleep 0.05; done`)
	if err := sup.start(ctx, proc{name: "polite", path: script, stopGrace: 20 * time.Second}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "child ready", func() bool { return strings.Contains(out.String(), "[polite] ready") })
	cancel()
	sup.wait()
	got := out.String()
	if !strings.Contains(got, "[polite] got TERM") || !strings.Contains(got, "polite stopped (exit 0)") {
		t.Errorf("child was not stopped gracefully:\n%s", got)
	}
	if strings.Contains(got, "restart") {
		t.Errorf("a stopped child must not be restarted:\n%s", got)
	}
}

func TestStartRefusesAMissingBinary(t *testing.T) {
	t.Parallel()
	sup, _ := setup(t)
	err := sup.start(context.Background(), proc{name: "ghost", path: filepath.Join(t.TempDir(), "nope")})
	if err == nil || !strings.Contains(err.Error(), "make build") {
		t.Fatalf("err = %v, want a hint to run make build", err)
	}
}

func TestLoadConfigReportsEveryProblem(t *testing.T) {
	t.Parallel()
	env := map[string]string{"GATEWAY_ADDR": "nonsense", "KAFKA_PARTITIONS": "0", "PROCESSOR_RATE_LIMIT": "x"}
	_, err := LoadConfig(func(k string) string { return env[k] })
	if err == nil {
		t.Fatal("want an error")
	}
	for _, want := range []string{"GATEWAY_ADDR", "KAFKA_PARTITIONS", "PROCESSOR_RATE_LIMIT"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
}

// A process with a niceness runs at it (DEVSTACK_WORKER_NICE), and so does
// every process it starts.
func TestSupervisorStartsAProcessNiced(t *testing.T) {
	t.Parallel()
	sup, out := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	script := writeScript(t, `echo "niceness $(nice)"; exec sleep 60`)
	if err := sup.start(ctx, proc{name: "worker", path: script, nice: 7, stopGrace: time.Second}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "the child's niceness", func() bool { return strings.Contains(out.String(), "niceness ") })
	cancel()
	sup.wait()
	if !strings.Contains(out.String(), "[worker] niceness 7") {
		t.Errorf("output lacks the child's niceness 7:\n%s", out.String())
	}
}
