package pacer

import (
	"container/heap"
	"context"
	"math"
	"sync"
)

// orderKey is the context key of a call's place in line (WithOrder).
type orderKey struct{}

// WithOrder gives the calls made with ctx their place in line at the pacer:
// when more calls wait than may take slots, the lowest order goes first.
// The dispatcher passes the fetch order of the payment's record, so that
// calls leave in log order and a user's next payment, which may start only
// when the previous one is done, does not wait behind every payment fetched
// after it. Calls without an order go after those with one, in arrival
// order.
func WithOrder(ctx context.Context, order uint64) context.Context {
	return context.WithValue(ctx, orderKey{}, order)
}

func orderOf(ctx context.Context) uint64 {
	if o, ok := ctx.Value(orderKey{}).(uint64); ok {
		return o
	}
	return math.MaxUint64
}

// turns lets a bounded number of holders in at a time; the others wait,
// the lowest order first, then the earliest arrival.
type turns struct {
	mu       sync.Mutex
	free     int
	waiting  waiters
	arrivals uint64
}

func newTurns(n int) *turns { return &turns{free: n} }

// acquire waits for a turn, or for ctx to end (an error, and no turn).
func (t *turns) acquire(ctx context.Context) error {
	t.mu.Lock()
	if t.free > 0 && len(t.waiting) == 0 {
		t.free--
		t.mu.Unlock()
		return nil
	}
	t.arrivals++
	w := &waiter{order: orderOf(ctx), arrival: t.arrivals, turn: make(chan struct{})}
	heap.Push(&t.waiting, w)
	t.mu.Unlock()
	select {
	case <-w.turn:
		return nil
	case <-ctx.Done():
		t.mu.Lock()
		granted := w.index < 0
		if !granted {
			heap.Remove(&t.waiting, w.index)
		}
		t.mu.Unlock()
		if granted {
			t.release() // given meanwhile: pass it on
		}
		return ctx.Err()
	}
}

// release ends a turn: the next waiter takes it.
func (t *turns) release() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.waiting) == 0 {
		t.free++
		return
	}
	w := heap.Pop(&t.waiting).(*waiter)
	close(w.turn)
}

type waiter struct {
	order, arrival uint64
	turn           chan struct{} // closed when the turn is given
	index          int           // in waiters; -1 once popped
}

// waiters is a heap.Interface, the lowest (order, arrival) on top.
type waiters []*waiter

func (q waiters) Len() int { return len(q) }
func (q waiters) Less(i, j int) bool {
	if q[i].order != q[j].order {
		return q[i].order < q[j].order
	}
	return q[i].arrival < q[j].arrival
}
func (q waiters) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].index, q[j].index = i, j
}
func (q *waiters) Push(x any) {
	w := x.(*waiter)
	w.index = len(*q)
	*q = append(*q, w)
}
func (q *waiters) Pop() any {
	old := *q
	w := old[len(old)-1]
	old[len(old)-1] = nil
	*q = old[:len(old)-1]
	w.index = -1
	return w
}
