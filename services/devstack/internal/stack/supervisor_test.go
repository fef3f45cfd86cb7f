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

// lastLine keeps the last non-empty line, across writes split anywhere,
// and a trailing line without its newline.
func TestLastLine(t *testing.T) {
	var l lastLine
	for _, w := range []string{"first\nsec", "ond\n\n", "  \n"} {
		if _, err := l.Write([]byte(w)); err != nil {
			t.Fatal(err)
		}
	}
	if got := l.String(); got != "second" {
		t.Errorf("after complete lines: %q, want %q", got, "second")
	}
	l.Write([]byte("panic: boom"))
	if got := l.String(); got != "panic: boom" {
		t.Errorf("with an unfinished line: %q, want %q", got, "panic: boom")
	}
	l.reset()
	l.Write([]byte(strings.Repeat("x", 2*maxLastLine) + "\n"))
	if got := l.String(); len(got) != maxLastLine {
		t.Errorf("a long line kept %d bytes, want %d", len(got), maxLastLine)
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
