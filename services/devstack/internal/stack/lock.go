package stack

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/finsvc/finance/pkg/filelock"
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
	if err := filelock.TryLock(f); err != nil {
		f.Close()
		if !errors.Is(err, filelock.ErrHeld) {
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
	// Unlocked before it is closed: devstack starts child processes.
	return func() {
		_ = filelock.Unlock(f)
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
