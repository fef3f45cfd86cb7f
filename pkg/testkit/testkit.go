// Package testkit is the tests' one way to wait: Eventually polls a
// condition until it holds or a deadline passes. Prefer a test signal
// (pkg/testsignal) where the code under test can say when it is done;
// Eventually is for state seen from outside (a row, an HTTP answer).
package testkit

import (
	"sync"
	"testing"
	"time"
)

// DefaultWait bounds Eventually: long enough for a loaded CI machine to
// start processes and run a rebalance, short of go test's own timeout.
const DefaultWait = 30 * time.Second

// pollEvery is how often Eventually looks again.
const pollEvery = 10 * time.Millisecond

// Eventually calls cond until it returns true, failing the test with what
// (a description of the awaited state) once DefaultWait has passed. cond
// runs on the test's goroutine, so it may call tb.Fatal itself, for
// example when a process it waits on has exited.
func Eventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	EventuallyWithin(tb, DefaultWait, what, cond)
}

// EventuallyWithin is Eventually with its own bound.
func EventuallyWithin(tb testing.TB, wait time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("after %s: still waiting for %s", wait, what)
		}
		time.Sleep(pollEvery)
	}
}

// Clock is a settable clock for tests: Now is what it was set to, and Add
// moves it. It is safe for concurrent use.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a Clock set to t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Add moves the clock by d.
func (c *Clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}
