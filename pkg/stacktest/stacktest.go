// Package stacktest helps tests that run the real binaries as separate
// processes: the end-to-end, crash and load-test smoke tests.
package stacktest

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/finsvc/finance/pkg/freeport"
)

// Binaries returns a directory holding each named service binary: those
// already in FINANCE_BIN_DIR (what `make build` made) are linked, the rest
// are built from ./services/<name> of the workspace.
func Binaries(tb testing.TB, names ...string) string {
	tb.Helper()
	dir := tb.TempDir()
	have := os.Getenv("FINANCE_BIN_DIR")
	var root string
	for _, name := range names {
		if have != "" {
			if _, err := os.Stat(filepath.Join(have, name)); err == nil {
				if err := os.Symlink(filepath.Join(have, name), filepath.Join(dir, name)); err != nil {
					tb.Fatal(err)
				}
				continue
			}
		}
		if root == "" {
			out, err := exec.Command("go", "env", "GOWORK").Output()
			root = filepath.Dir(strings.TrimSpace(string(out)))
			if err != nil || root == "." {
				tb.Fatalf("find the repository root through go env GOWORK: %v", err)
			}
		}
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, name), "./services/"+name)
		cmd.Dir = root
		if b, err := cmd.CombinedOutput(); err != nil {
			tb.Fatalf("go build %s: %v\n%s", name, err, b)
		}
	}
	return dir
}

// FreeAddr returns a loopback address with a port free at the time of the
// call, below the kernel's ephemeral ports (see package freeport).
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	a, err := freeport.Addr()
	if err != nil {
		tb.Fatal(err)
	}
	return a
}

// Buffer collects a child process's output; safe for concurrent use.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write implements io.Writer.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
