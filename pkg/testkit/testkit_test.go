package testkit_test

import (
	"testing"
	"time"

	"github.com/finsvc/finance/pkg/testkit"
)

func TestEventually(t *testing.T) {
	t.Parallel()
	n := 0
	testkit.Eventually(t, "three calls", func() bool { n++; return n == 3 })
	if n != 3 {
		t.Errorf("cond called %d times, want 3", n)
	}
}

// fatalTB records a Fatalf instead of ending the test, to check that
// EventuallyWithin gives up.
type fatalTB struct {
	testing.TB
	failed string
}

func (f *fatalTB) Helper() {}
func (f *fatalTB) Fatalf(format string, args ...any) {
	f.failed = format
	panic(f)
}

func TestEventuallyGivesUp(t *testing.T) {
	t.Parallel()
	tb := &fatalTB{TB: t}
	func() {
		defer func() {
			if r := recover(); r != nil && r != any(tb) {
				panic(r)
			}
		}()
		testkit.EventuallyWithin(tb, 30*time.Millisecond, "never", func() bool { return false })
	}()
	if tb.failed == "" {
		t.Error("EventuallyWithin returned for a condition that never held")
	}
}
