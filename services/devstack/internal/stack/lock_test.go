package stack

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
)

// TestSecondStackOnTheStateDirFails: while one devstack holds the state
// directory, a second one fails at once, before it starts anything, and
// names the holder; once the first lets go, the directory is free again.
func TestSecondStackOnTheStateDirFails(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	unlock, err := lockStateDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("another devstack (pid %d) is running with the state directory %s", os.Getpid(), dir)
	if _, err := lockStateDir(dir); err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("second lock = %v, want %q", err, want)
	}
	st, err := Start(context.Background(), Config{StateDir: dir}, Options{Quiet: true}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), want) {
		if st != nil {
			st.Close()
		}
		t.Fatalf("Start = %v, want %q", err, want)
	}
	if err := CheckStateDirFree(dir); err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("CheckStateDirFree = %v, want %q", err, want)
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 1 {
		t.Errorf("state directory after the refused start: %v (%v), want only devstack.lock", entries, err)
	}

	unlock()
	if err := CheckStateDirFree(dir); err != nil {
		t.Fatalf("CheckStateDirFree after the first let go: %v", err)
	}
	again, err := lockStateDir(dir)
	if err != nil {
		t.Fatalf("lock after the first let go: %v", err)
	}
	again()
}
