// Package filelock takes a file's exclusive lock (flock(2)), for a process
// that must be the only one using a file or a directory. The lock belongs to
// the open file: it ends when the file is closed, or with the process however
// it ends.
package filelock

import (
	"errors"
	"os"
	"syscall"
)

// ErrHeld says that another open file holds the lock.
var ErrHeld = errors.New("locked by another process")

// TryLock takes f's exclusive lock without waiting: ErrHeld when another
// open file holds it.
func TryLock(f *os.File) error {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return ErrHeld
	}
	return err
}

// Unlock releases f's lock. Call it before closing f: a child process being
// started at that moment holds a copy of the descriptor until its exec
// closes it, and the lock would outlive the Close.
func Unlock(f *os.File) error {
	return syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
}
