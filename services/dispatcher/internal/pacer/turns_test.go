package pacer

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/finsvc/finance/pkg/testkit"
)

// queued waits until n callers wait in tu.
func queued(t *testing.T, tu *turns, n int) {
	t.Helper()
	testkit.Eventually(t, fmt.Sprintf("%d callers in line", n), func() bool {
		tu.mu.Lock()
		defer tu.mu.Unlock()
		return len(tu.waiting) == n
	})
}

func TestTurnsGoLowestOrderFirst(t *testing.T) {
	t.Parallel()
	tu := newTurns(1)
	if err := tu.acquire(context.Background()); err != nil { // the one turn, held
		t.Fatal(err)
	}
	// They arrive in this order: none (no order: after every ordered
	// one), 30, 10, none, 20.
	got := make(chan string, 5)
	for i, o := range []int{-1, 30, 10, -1, 20} {
		ctx, name := context.Background(), fmt.Sprintf("none#%d", i)
		if o >= 0 {
			ctx, name = WithOrder(ctx, uint64(o)), fmt.Sprint(o)
		}
		go func() {
			if err := tu.acquire(ctx); err != nil {
				got <- err.Error()
				return
			}
			got <- name
		}()
		queued(t, tu, i+1) // arrivals in order
	}
	var order []string
	for range 5 {
		tu.release() // the turn goes to the next in line
		order = append(order, <-got)
	}
	if want := "[10 20 30 none#0 none#3]"; fmt.Sprint(order) != want {
		t.Errorf("turns went to %v, want %s", order, want)
	}
	tu.release()
	if tu.free != 1 || len(tu.waiting) != 0 {
		t.Errorf("after the last release: %d free, %d waiting, want 1 and 0", tu.free, len(tu.waiting))
	}
}

func TestTurnsCallerThatLeavesGivesUpItsPlace(t *testing.T) {
	t.Parallel()
	tu := newTurns(1)
	if err := tu.acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(WithOrder(context.Background(), 1))
	left := make(chan error, 1)
	go func() { left <- tu.acquire(ctx) }()
	queued(t, tu, 1)
	next := make(chan error, 1)
	go func() { next <- tu.acquire(WithOrder(context.Background(), 2)) }()
	queued(t, tu, 2)
	cancel()
	if err := <-left; !errors.Is(err, context.Canceled) {
		t.Fatalf("the caller that left: %v, want context.Canceled", err)
	}
	tu.release()
	if err := <-next; err != nil {
		t.Fatalf("the next caller: %v", err)
	}
	tu.release()
	if tu.free != 1 || len(tu.waiting) != 0 {
		t.Errorf("%d free, %d waiting, want 1 and 0: a turn was lost or made", tu.free, len(tu.waiting))
	}
}
