package filelock

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestTryLock: a second open file of the same path is refused the lock
// while the first holds it, and gets it once the first unlocks.
func TestTryLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock")
	open := func() *os.File {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	first, second := open(), open()
	if err := TryLock(first); err != nil {
		t.Fatalf("first TryLock: %v", err)
	}
	if err := TryLock(second); !errors.Is(err, ErrHeld) {
		t.Fatalf("second TryLock while the first holds it = %v, want ErrHeld", err)
	}
	if err := Unlock(first); err != nil {
		t.Fatal(err)
	}
	if err := TryLock(second); err != nil {
		t.Fatalf("second TryLock after Unlock: %v", err)
	}
}
