package stack

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// lockStateDir takes the state directory for this process: a second
// devstack on the same directory would find the first one's ports taken
// and restart its services forever, and its processor simulator would
// open the same record of executions. So it fails at once and says which
// process holds the directory. The lock (flock on dir/devstack.lock,
// holding the holder's pid) is the kernel's: it ends with the process,
// however the process ends, so a killed devstack never leaves it behind.
func lockStateDir(dir string) (unlock func(), err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	path := filepath.Join(dir, "devstack.lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock state directory: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("lock state directory %s: %w", dir, err)
		}
		holder := "another process"
		if b, err := os.ReadFile(path); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				holder = fmt.Sprintf("pid %d", pid)
			}
		}
		return nil, fmt.Errorf("another devstack (%s) is running with the state directory %s: stop it first (Ctrl-C in its terminal), or give this one another STATE_DIR", holder, dir)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	// Unlock explicitly before closing: a child being started at that
	// moment holds a copy of the descriptor until its exec closes it, and
	// the lock, which belongs to the open file, would outlive the Close.
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// CheckStateDirFree fails as Start would when another devstack holds dir.
// Call it before touching dir's files ahead of Start (the chaos run clears
// the broker's data and the processor's record first).
func CheckStateDirFree(dir string) error {
	unlock, err := lockStateDir(dir)
	if err != nil {
		return err
	}
	unlock()
	return nil
}
