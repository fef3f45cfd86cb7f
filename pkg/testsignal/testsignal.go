// Package testsignal lets code tell its tests that something happened (a
// batch committed, a partition revoked), so tests wait for the event itself
// instead of sleeping, after River's rivershared/testsignal. A Signal that
// a test did not Init costs one nil check and does nothing.
package testsignal

import "time"

// TB is the part of testing.TB a signal uses. The package does not import
// testing, so production code that carries a Signal does not link it.
type TB interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
}

// bufferSize bounds the signals a test may leave unread before Signal
// blocks the code under test; tests read what they wait for.
const bufferSize = 1000

// waitFor bounds WaitOrTimeout.
const waitFor = 30 * time.Second

// Signal carries values of T from the code under test to a test. The zero
// Signal is off.
type Signal[T any] struct {
	ch chan T
}

// Init turns the signal on; call it from the test before the code runs.
func (s *Signal[T]) Init(tb TB) {
	tb.Helper()
	s.ch = make(chan T, bufferSize)
}

// Signal sends v to the test when the signal is on.
func (s *Signal[T]) Signal(v T) {
	if s.ch == nil {
		return
	}
	s.ch <- v
}

// WaitOrTimeout returns the next value, failing the test when none comes
// within 30 s.
func (s *Signal[T]) WaitOrTimeout(tb TB) T {
	tb.Helper()
	if s.ch == nil {
		tb.Fatal("testsignal: WaitOrTimeout on a signal that was not Init")
	}
	select {
	case v := <-s.ch:
		return v
	case <-time.After(waitFor):
		tb.Fatalf("testsignal: no signal within %s", waitFor)
		panic("unreachable")
	}
}

// Chan returns the channel the values arrive on, for a select; nil when
// the signal is off.
func (s *Signal[T]) Chan() <-chan T { return s.ch }
