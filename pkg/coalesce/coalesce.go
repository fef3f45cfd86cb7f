// Package coalesce runs concurrent requests of one kind in shared
// statements.
//
// Under load most of a small statement's cost is its round trip and
// per-statement work, not its rows, so concurrent callers share
// statements: a call that finds fewer than maxInFlight statements running
// starts one at once with every call waiting at that moment; otherwise it
// waits for the next one, started as soon as a running statement returns.
// No timer: alone, a call runs at once, exactly as a statement of its own
// would.
//
// A call only ever joins a statement that starts after the call arrived,
// so what it gets is at least as new as the database at the time of the
// call (the gateway's read-your-writes rests on it). A call whose context
// ends before its statement starts is withdrawn: the statement never sees
// its request (the dispatch guard's claims rest on it).
//
// The gateway's wallet and feed reads (docs/reads.md, "Reads in shared
// statements") and the dispatcher's guard use it.
package coalesce

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// ErrWithdrawn wraps the context error Do returns for a call withdrawn
// before its statement started: the statement never saw the request. A
// context error without it means the statement was already running (it
// completes for the others, and may have done this request's work).
var ErrWithdrawn = errors.New("withdrawn before its statement started")

// Coalescer runs concurrent requests in shared statements: query answers a
// batch of requests with one result and one error per request, in the
// same order.
type Coalescer[Req, Res any] struct {
	query       func(ctx context.Context, reqs []Req) ([]Res, []error)
	maxInFlight int
	maxBatch    int
	timeout     time.Duration

	mu       sync.Mutex
	waiting  []*call[Req, Res]
	inFlight int
	// statements and calls count what ran (Stats).
	statements, calls int64
}

// call is one request waiting for its result.
type call[Req, Res any] struct {
	req  Req
	done chan struct{}
	res  Res
	err  error
}

// New returns a Coalescer that runs at most maxInFlight statements at once,
// each for at most maxBatch requests and bounded by timeout.
func New[Req, Res any](maxInFlight, maxBatch int, timeout time.Duration,
	query func(ctx context.Context, reqs []Req) ([]Res, []error)) *Coalescer[Req, Res] {
	return &Coalescer[Req, Res]{query: query, maxInFlight: max(1, maxInFlight), maxBatch: max(1, maxBatch), timeout: timeout}
}

// Do returns req's result, from a statement that started after this call.
// When ctx ends first, Do returns ctx's error; the request is withdrawn if
// its statement has not started (the error then wraps ErrWithdrawn too),
// else the statement completes for the others and this result is dropped.
func (b *Coalescer[Req, Res]) Do(ctx context.Context, req Req) (Res, error) {
	if err := ctx.Err(); err != nil {
		var zero Res
		return zero, fmt.Errorf("%w: %w", ErrWithdrawn, err) // a caller already gone never reaches a statement
	}
	c := &call[Req, Res]{req: req, done: make(chan struct{})}
	b.mu.Lock()
	b.waiting = append(b.waiting, c)
	batch := b.takeLocked()
	b.mu.Unlock()
	if batch != nil {
		// This call starts the statement and waits for it in its own
		// goroutine: no hand-over, no extra goroutine at low load.
		b.run(batch)
	}
	select {
	case <-c.done:
		return c.res, c.err
	case <-ctx.Done():
		b.mu.Lock()
		n := len(b.waiting)
		b.waiting = slices.DeleteFunc(b.waiting, func(w *call[Req, Res]) bool { return w == c })
		withdrawn := len(b.waiting) < n
		b.mu.Unlock()
		var zero Res
		if withdrawn {
			return zero, fmt.Errorf("%w: %w", ErrWithdrawn, ctx.Err())
		}
		return zero, ctx.Err()
	}
}

// takeLocked returns the waiting calls (at most maxBatch) as a batch to run
// when a statement may start now, else nil. b.mu is held.
func (b *Coalescer[Req, Res]) takeLocked() []*call[Req, Res] {
	if len(b.waiting) == 0 || b.inFlight >= b.maxInFlight {
		return nil
	}
	n := min(len(b.waiting), b.maxBatch)
	batch := b.waiting[:n:n]
	b.waiting = append([]*call[Req, Res](nil), b.waiting[n:]...)
	b.inFlight++
	return batch
}

// run answers batch with one statement, then starts the next batch in a
// goroutine when calls are waiting. The statement's context is none of the
// callers': one caller going away must not fail the others' calls.
func (b *Coalescer[Req, Res]) run(batch []*call[Req, Res]) {
	reqs := make([]Req, len(batch))
	for i, c := range batch {
		reqs[i] = c.req
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
	res, errs := b.query(ctx, reqs)
	cancel()
	for i, c := range batch {
		c.res, c.err = res[i], errs[i]
		close(c.done)
	}
	b.mu.Lock()
	b.inFlight--
	b.statements++
	b.calls += int64(len(batch))
	next := b.takeLocked()
	b.mu.Unlock()
	if next != nil {
		go b.run(next)
	}
}

// Stats says how many statements ran, and how many calls they answered.
func (b *Coalescer[Req, Res]) Stats() (statements, calls int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.statements, b.calls
}

// Waiting says how many calls wait for a statement.
func (b *Coalescer[Req, Res]) Waiting() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.waiting)
}

// Hold takes every statement slot, as if statements were running, so that
// calls wait; release frees the slots and runs the waiting calls' batch.
// For tests that need many calls in one statement.
func (b *Coalescer[Req, Res]) Hold() (release func()) {
	b.mu.Lock()
	held := b.maxInFlight - b.inFlight
	b.inFlight = b.maxInFlight
	b.mu.Unlock()
	return func() {
		b.mu.Lock()
		b.inFlight -= held
		batch := b.takeLocked()
		b.mu.Unlock()
		if batch != nil {
			b.run(batch)
		}
	}
}
