package report

import (
	"os"
	"path/filepath"
	"testing"
)

// TestProcCPU sums user, system and waited-for children's time of every
// process with the name, and none of the others.
func TestProcCPU(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	stat := map[string]string{
		// The server: 100+50 ticks of its own, 300+20 of exited backends.
		"10": "10 (postgres) S 1 10 10 0 -1 4194560 100 0 0 0 100 50 300 20 20 0 1 0 5 100 10",
		// A live backend.
		"11": "11 (postgres) S 10 11 11 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 5 100 10",
		// Another command, with a name that holds ") (".
		"12": "12 (a) (postgres) R 1 12 12 0 -1 4194560 100 0 0 0 999 999 0 0 20 0 1 0 5 100 10",
	}
	for pid, line := range stat {
		if err := os.MkdirAll(filepath.Join(dir, pid), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, pid, "stat"), []byte(line+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "uptime"), []byte("1 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := procCPU(dir, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	if want := 4.80; got != want {
		t.Errorf("postgres used %.2f s, want %.2f", got, want)
	}
	if _, err := procCPU(dir, "devkafka"); err == nil {
		t.Error("no error for a name no process has")
	}
}
