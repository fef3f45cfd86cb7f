package report

import (
	"os"
	"path/filepath"
	"testing"
)

func writeStat(t *testing.T, dir string, stat map[string]string) {
	t.Helper()
	for pid, line := range stat {
		if err := os.MkdirAll(filepath.Join(dir, pid), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, pid, "stat"), []byte(line+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestProcCPU reads user and system time of every process with the name,
// and none of the others.
func TestProcCPU(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeStat(t, dir, map[string]string{
		// The server: 100+50 ticks (its exited children's 300+20 are not its own).
		"10": "10 (postgres) S 1 10 10 0 -1 4194560 100 0 0 0 100 50 300 20 20 0 1 0 5 100 10",
		"11": "11 (postgres) S 10 11 11 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 5 100 10",
		// Another command, with a name that holds ") (".
		"12": "12 (a) (postgres) R 1 12 12 0 -1 4194560 100 0 0 0 999 999 0 0 20 0 1 0 5 100 10",
	})
	if err := os.WriteFile(filepath.Join(dir, "uptime"), []byte("1 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := procCPU(dir, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got["10"] != 1.5 || got["11"] != 0.1 {
		t.Errorf("postgres processes %v, want 10: 1.5 s, 11: 0.1 s", got)
	}
	if _, err := procCPU(dir, "devkafka"); err == nil {
		t.Error("no error for a name no process has")
	}
}

// TestLocalUsed counts a process's difference, a new process's whole time,
// and nothing of one that exited.
func TestLocalUsed(t *testing.T) {
	t.Parallel()
	k := func(pid string) string { return "postgres" + procSep + pid }
	before := CPUReading{k("10"): 5, k("11"): 100, "gateway": 3}
	after := CPUReading{k("10"): 6.5, k("12"): 2, "gateway": 4}
	got, ok := localUsed("postgres", before, after)
	if !ok || got != 3.5 {
		t.Errorf("used %.2f (found %v), want 3.5: 1.5 of pid 10 and 2 of the new pid 12, none of the exited 11", got, ok)
	}
	used := CPUUsed(map[string]string{"postgres": ProcPrefix + "postgres", "gateway": "http://gw/metrics"}, before, after, map[string]string{})
	if len(used) != 2 || used[0].Seconds != 1 || used[1].Seconds != 3.5 {
		t.Errorf("CPUUsed = %+v, want gateway 1 s, postgres 3.5 s", used)
	}
}
