package store

import (
	"context"
	"sync"
	"time"
)

// Reads in shared statements (docs/reads.md, "Reads in shared statements").
//
// Every feed or balance read asks the primary for the user's wallet row
// (Wallet), and a cold feed read for the user's first page (FeedPage).
// Under load most of such a read's cost is the statement's round trip and
// per-statement work, not its rows, so concurrent reads share statements:
// a read that finds fewer than maxInFlight statements of its kind running
// starts one at once with every read of that kind waiting at that moment;
// otherwise it waits for the next one, started as soon as a running
// statement returns. No timer: alone, a read runs at once, exactly as a
// statement of its own would.
//
// Read-your-writes holds as before: a read only ever joins a statement
// that starts after the read arrived, so what it gets is at least as new
// as the primary's state at the time of the request.

const (
	// sharedBatchMax caps the reads of one statement.
	sharedBatchMax = 256
	// sharedInFlight is how many statements of one kind run at once. Two
	// keep a statement starting while another one's rows come back; more
	// would only make the batches smaller on a 2-core database.
	sharedInFlight = 2
	// sharedReadTimeout bounds one statement, whoever waits for it.
	sharedReadTimeout = 5 * time.Second
)

// coalescer runs concurrent reads of one kind in shared statements: query
// answers a batch of requests with one result (or error) per request, in
// the same order.
type coalescer[Req, Res any] struct {
	query       func(ctx context.Context, reqs []Req) ([]Res, []error)
	maxInFlight int

	mu       sync.Mutex
	waiting  []*sharedCall[Req, Res]
	inFlight int
	// statements and reads count what ran (Stats).
	statements, reads int64
}

// sharedCall is one read waiting for its result.
type sharedCall[Req, Res any] struct {
	req  Req
	done chan struct{}
	res  Res
	err  error
}

func newCoalescer[Req, Res any](maxInFlight int, query func(ctx context.Context, reqs []Req) ([]Res, []error)) *coalescer[Req, Res] {
	return &coalescer[Req, Res]{query: query, maxInFlight: max(1, maxInFlight)}
}

// do returns req's result, from a statement that started after this call.
func (b *coalescer[Req, Res]) do(ctx context.Context, req Req) (Res, error) {
	call := &sharedCall[Req, Res]{req: req, done: make(chan struct{})}
	b.mu.Lock()
	b.waiting = append(b.waiting, call)
	batch := b.takeLocked()
	b.mu.Unlock()
	if batch != nil {
		// This read starts the statement and waits for it in its own
		// goroutine: no hand-over, no extra goroutine at low load.
		b.run(batch)
	}
	select {
	case <-call.done:
		return call.res, call.err
	case <-ctx.Done():
		// The statement still completes for the others; this read's
		// result is dropped.
		var zero Res
		return zero, ctx.Err()
	}
}

// takeLocked returns the waiting reads (at most sharedBatchMax) as a batch
// to run when a statement may start now, else nil. b.mu is held.
func (b *coalescer[Req, Res]) takeLocked() []*sharedCall[Req, Res] {
	if len(b.waiting) == 0 || b.inFlight >= b.maxInFlight {
		return nil
	}
	n := min(len(b.waiting), sharedBatchMax)
	batch := b.waiting[:n:n]
	b.waiting = append([]*sharedCall[Req, Res](nil), b.waiting[n:]...)
	b.inFlight++
	return batch
}

// run answers batch with one statement, then starts the next batch in a
// goroutine when reads are waiting. The statement's context is none of the
// callers': one client going away must not fail the others' reads.
func (b *coalescer[Req, Res]) run(batch []*sharedCall[Req, Res]) {
	reqs := make([]Req, len(batch))
	for i, c := range batch {
		reqs[i] = c.req
	}
	ctx, cancel := context.WithTimeout(context.Background(), sharedReadTimeout)
	res, errs := b.query(ctx, reqs)
	cancel()
	for i, c := range batch {
		c.res, c.err = res[i], errs[i]
		close(c.done)
	}
	b.mu.Lock()
	b.inFlight--
	b.statements++
	b.reads += int64(len(batch))
	next := b.takeLocked()
	b.mu.Unlock()
	if next != nil {
		go b.run(next)
	}
}

// Stats says how many statements ran, and how many reads they answered.
func (b *coalescer[Req, Res]) Stats() (statements, reads int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.statements, b.reads
}

// ReadStats says how many statements the reads of kind ("wallet" or
// "feed") took, and how many reads they answered; 0, 0 for another kind.
func (s *Store) ReadStats(kind string) (statements, reads int64) {
	switch kind {
	case "wallet":
		return s.wallets.Stats()
	case "feed":
		return s.feeds.Stats()
	}
	return 0, 0
}
