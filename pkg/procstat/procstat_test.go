package procstat_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/finsvc/finance/pkg/procstat"
)

// fakeProc writes a /proc of stat lines by pid under a temporary folder.
func fakeProc(t *testing.T, stat map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for pid, line := range stat {
		if err := os.MkdirAll(filepath.Join(dir, pid), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, pid, "stat"), []byte(line+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Not a process.
	if err := os.WriteFile(filepath.Join(dir, "uptime"), []byte("1 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

var stats = map[string]string{
	// The server: 100+50 ticks (its exited children's 300+20 are not its own).
	"10": "10 (postgres) S 1 10 10 0 -1 4194560 100 0 0 0 100 50 300 20 20 0 1 0 5 100 10",
	"11": "11 (postgres) S 10 11 11 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 5 100 10",
	// Another command, with a name that holds ") (".
	"12": "12 (a) (postgres) R 1 12 12 0 -1 4194560 100 0 0 0 999 999 0 0 20 0 1 0 5 100 10",
}

func TestByName(t *testing.T) {
	t.Parallel()
	dir := fakeProc(t, stats)
	got, err := procstat.ByName(dir, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[int]float64{10: 1.5, 11: 0.1}, got); diff != "" {
		t.Errorf("postgres processes (-want +got):\n%s", diff)
	}
	if got, err := procstat.ByName(dir, "a) (postgres"); err != nil || got[12] != 19.98 {
		t.Errorf("the command named with parentheses: %v, %v; want 12: 19.98 s", got, err)
	}
	if _, err := procstat.ByName(dir, "devkafka"); err == nil {
		t.Error("no error for a name no process has")
	}
	bad := fakeProc(t, map[string]string{"13": "13 (postgres) S 1 13 13 0 -1 4194560 100 0 0 0 x 50 0 0 20 0 1 0 5 100 10"})
	if _, err := procstat.ByName(bad, "postgres"); err == nil {
		t.Error("no error for a process whose CPU time is unreadable")
	}
}

func TestPID(t *testing.T) {
	t.Parallel()
	dir := fakeProc(t, stats)
	if sec, err := procstat.PID(dir, 10); err != nil || sec != 1.5 {
		t.Errorf("PID(10) = %v, %v; want 1.5 s", sec, err)
	}
	if _, err := procstat.PID(dir, 99); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("PID of a process that is gone: %v, want os.ErrNotExist", err)
	}
	// This test's own process is in the real /proc on Linux.
	if sec, err := procstat.PID(procstat.Dir, os.Getpid()); err != nil || sec < 0 {
		t.Errorf("PID(self) = %v, %v", sec, err)
	}
}

func TestParseStat(t *testing.T) {
	t.Parallel()
	for _, line := range []string{"", "10 postgres S", "10 (postgres) S 1 2 3"} {
		if _, _, err := procstat.ParseStat([]byte(line)); err == nil {
			t.Errorf("ParseStat(%q): no error", line)
		}
	}
}

// TestUsed counts a process's difference, a new process's whole time, and
// nothing of one that exited.
func TestUsed(t *testing.T) {
	t.Parallel()
	before := map[int]float64{10: 5, 11: 100}
	after := map[int]float64{10: 6.5, 12: 2}
	if got := procstat.Used(before, after); got != 3.5 {
		t.Errorf("Used = %v, want 3.5: 1.5 of pid 10 and 2 of the new pid 12, none of the exited 11", got)
	}
}

func TestPIDs(t *testing.T) {
	t.Parallel()
	dir := fakeProc(t, stats)
	got := procstat.PIDs(dir, 10, 99)
	if diff := cmp.Diff(map[int]float64{10: 1.5}, got); diff != "" {
		t.Errorf("PIDs(10, 99) (-want +got):\n%s", diff)
	}
}
