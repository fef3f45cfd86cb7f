package inflight

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func newLimiter(t *testing.T, p Policy) *Limiter {
	t.Helper()
	l := New(p, 0, prometheus.NewRegistry())
	if l == nil {
		t.Fatalf("New(%+v) = nil", p)
	}
	return l
}

func acquire(t *testing.T, l *Limiter, key string) *Slot {
	t.Helper()
	s, err := l.Acquire(context.Background(), key)
	if err != nil {
		t.Fatalf("Acquire(%s): %v", key, err)
	}
	return s
}

// waiter acquires in a goroutine; its channel gets the slot once granted.
func waiter(l *Limiter, key string) <-chan *Slot {
	got := make(chan *Slot, 1)
	go func() {
		s, err := l.Acquire(context.Background(), key)
		if err == nil {
			got <- s
		}
	}()
	return got
}

// waitFor polls until cond holds (the waiters' goroutines queue
// asynchronously), failing after a few seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestWindowStartsNarrowAndOpensAsRequestsAreServed(t *testing.T) {
	l := newLimiter(t, Policy{Start: 2, Max: 3, Wait: time.Minute})
	a, b := acquire(t, l, "10.0.0.1"), acquire(t, l, "10.0.0.1")
	third := waiter(l, "10.0.0.1")
	waitFor(t, "the third request to wait", func() bool { _, _, w := l.Window("10.0.0.1"); return w == 1 })
	other := acquire(t, l, "10.0.0.2") // another address is not held up
	other.Release(200)

	a.Release(200) // served: window 3, and the waiter gets the slot
	c := <-third
	if w, active, waiting := l.Window("10.0.0.1"); w != 3 || active != 2 || waiting != 0 {
		t.Fatalf("after one served: window %d, active %d, waiting %d; want 3, 2, 0", w, active, waiting)
	}
	d := acquire(t, l, "10.0.0.1") // the window has room for a third now
	b.Release(200)                 // Max 3: stays 3
	if w, _, _ := l.Window("10.0.0.1"); w != 3 {
		t.Fatalf("window %d past Max 3", w)
	}
	c.Release(200)
	d.Release(200)
	if n := l.Addresses(); n != 0 {
		t.Fatalf("%d addresses remembered with nothing in progress; want 0", n)
	}
	if w, _, _ := l.Window("10.0.0.1"); w != 3 {
		t.Fatalf("an idle address's window is %d; want the 3 it earned", w)
	}
	if got := testutil.ToFloat64(l.waited); got != 1 {
		t.Fatalf("gateway_inflight_waited_total = %v; want 1", got)
	}
}

func TestIdleWindowsAreBoundedInMemory(t *testing.T) {
	l := New(Policy{Start: 1, Max: 8, Wait: time.Minute}, 2, prometheus.NewRegistry())
	for _, key := range []string{"a", "b", "c"} {
		acquire(t, l, key).Release(200) // each earns a window of 2
	}
	if w, _, _ := l.Window("a"); w != 1 {
		t.Fatalf("the least recently used of three idle addresses kept window %d; want it forgotten (Start 1)", w)
	}
	for _, key := range []string{"b", "c"} {
		if w, _, _ := l.Window(key); w != 2 {
			t.Fatalf("%s: window %d; want 2", key, w)
		}
	}
	s := acquire(t, l, "c")
	s2 := acquire(t, l, "c") // its earned window of 2 holds two at once
	s.Release(404)           // halved back to Start: nothing to remember
	s2.Release(404)
	if w, _, _ := l.Window("c"); w != 1 || l.windows.Len() != 1 {
		t.Fatalf("after refusals: window %d, %d windows kept; want 1, 1", w, l.windows.Len())
	}
}

func TestRefusalsHalveTheWindowNotBelowStart(t *testing.T) {
	l := newLimiter(t, Policy{Start: 2, Max: 64, Wait: time.Minute})
	keep := acquire(t, l, "a") // keeps the address known
	for range 20 {
		acquire(t, l, "a").Release(204)
	}
	if w, _, _ := l.Window("a"); w != 22 {
		t.Fatalf("after 20 served: window %d; want 22", w)
	}
	acquire(t, l, "a").Release(404)
	if w, _, _ := l.Window("a"); w != 11 {
		t.Fatalf("after a refusal: window %d; want 11", w)
	}
	acquire(t, l, "a").Release(503) // the server's fault: no change
	acquire(t, l, "a").Release(0)   // still served (a long-poll): no change
	if w, _, _ := l.Window("a"); w != 11 {
		t.Fatalf("after a 503 and a 0: window %d; want 11", w)
	}
	for range 5 {
		acquire(t, l, "a").Release(401)
	}
	if w, _, _ := l.Window("a"); w != 2 {
		t.Fatalf("after many refusals: window %d; want Start 2", w)
	}
	keep.Release(200)
}

func TestWaitersGetSlotsInArrivalOrder(t *testing.T) {
	l := newLimiter(t, Policy{Start: 1, Max: 1, Wait: time.Minute})
	first := acquire(t, l, "a")
	var order []int
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := l.Acquire(context.Background(), "a")
			if err != nil {
				t.Errorf("waiter %d: %v", i, err)
				return
			}
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
			s.Release(200)
		}()
		waitFor(t, "the waiter to queue", func() bool { _, _, w := l.Window("a"); return w == i+1 })
	}
	first.Release(200)
	wg.Wait()
	for i, got := range order {
		if got != i {
			t.Fatalf("waiters served in order %v; want 0..4", order)
		}
	}
	if n := l.Addresses(); n != 0 {
		t.Fatalf("%d addresses remembered; want 0", n)
	}
}

func TestWaitIsBoundedAndGivingUpHoldsNothing(t *testing.T) {
	l := newLimiter(t, Policy{Start: 1, Max: 1, Wait: 50 * time.Millisecond})
	held := acquire(t, l, "a")
	if s, err := l.Acquire(context.Background(), "a"); !errors.Is(err, ErrWaitedTooLong) || s != nil {
		t.Fatalf("Acquire past Wait = %v, %v; want nil, ErrWaitedTooLong", s, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(10 * time.Millisecond); cancel() }()
	if _, err := l.Acquire(ctx, "a"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Acquire with a cancelled context: %v; want context.Canceled", err)
	}
	if w, active, waiting := l.Window("a"); w != 1 || active != 1 || waiting != 0 {
		t.Fatalf("after two gave up: window %d, active %d, waiting %d; want 1, 1, 0", w, active, waiting)
	}
	held.Release(200)
	held.Release(200) // a second release does nothing
	if n := l.Addresses(); n != 0 {
		t.Fatalf("%d addresses remembered; want 0", n)
	}
	acquire(t, l, "a").Release(200) // the slot is free again
	if got := testutil.ToFloat64(l.gaveUp); got != 2 {
		t.Fatalf("gateway_inflight_refused_total = %v; want 2", got)
	}
}

func TestOffAndNil(t *testing.T) {
	if l := New(Policy{Start: 0, Max: 10}, 0, prometheus.NewRegistry()); l != nil {
		t.Fatal("a zero Start must turn the limit off")
	}
	var l *Limiter
	s, err := l.Acquire(context.Background(), "a")
	if err != nil || s != nil {
		t.Fatalf("nil Limiter: Acquire = %v, %v; want nil, nil", s, err)
	}
	s.Release(200) // safe
	if l.Addresses() != 0 || l.Policy().Enabled() {
		t.Fatal("a nil Limiter knows nothing")
	}
}
