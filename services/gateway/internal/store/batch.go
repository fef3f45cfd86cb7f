package store

// Group commit for accepted payments.
//
// One transaction per payment costs PostgreSQL eight statements and a WAL
// flush; a burst of thousands of payments a second queues on that. With
// batching started, each AcceptPayment call hands its payment to a worker,
// which takes every call waiting at that moment (up to BatchConfig.MaxBatch)
// and accepts them together in one transaction of about ten set-based
// statements, in three round trips. Batches form by themselves under load:
// the longer a transaction takes, the more calls wait for the next one.
// At a few hundred payments a second they do not: each payment comes alone
// and pays for a whole transaction. BatchConfig.Linger then keeps a batch
// open that long after its first call, so the calls of that window share
// one transaction, but only while calls arrive closer together than the
// linger: a payment that would wait alone is not kept waiting. 0 takes
// only what already waits, with no added delay.
//
// Each call still gets its own answer: created, replayed, key reused, unknown
// user or merchant, insufficient funds. When a batch fails as a whole (a
// conflict it did not foresee, a lost connection), nothing of it is
// committed and the worker accepts its payments again one by one, each
// in its own transaction, so one bad payment never fails the others. (If a
// commit fails with its outcome unknown, the one-by-one pass finds the
// payments that did commit by their keys and answers them as replays.)

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/finsvc/finance/pkg/kafka"
	"github.com/finsvc/finance/pkg/ledger"
	"github.com/finsvc/finance/pkg/outbox"
	"github.com/finsvc/finance/pkg/payment"
	"github.com/finsvc/finance/pkg/postgres"
	"github.com/finsvc/finance/pkg/testsignal"
	"github.com/finsvc/finance/pkg/wire"
)

// BatchConfig sets how payments are grouped into transactions.
type BatchConfig struct {
	// Workers is how many batch transactions may run at once.
	Workers int
	// MaxBatch is the most payments one transaction accepts.
	MaxBatch int
	// Linger is how long a batch stays open for more calls after its
	// first, while calls arrive less than Linger apart on average; 0
	// closes it as soon as the queue is empty.
	Linger time.Duration
	// Timeout bounds one batch transaction.
	Timeout time.Duration
	// Logger receives a warning when a batch falls back to one by one.
	Logger *slog.Logger
	// Observe, when set, is told the size of every batch committed.
	Observe func(size int)
}

// withDefaults fills in the zero fields: one worker, batches of one, 10 s.
func (cfg BatchConfig) withDefaults() BatchConfig {
	if cfg.Workers < 1 {
		cfg.Workers = 1
	}
	if cfg.MaxBatch < 1 {
		cfg.MaxBatch = 1
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return cfg
}

// acceptCall is one AcceptPayment call waiting for a batch.
type acceptCall struct {
	ctx  context.Context
	p    NewPayment
	done chan acceptResult // buffered: a worker never blocks on a caller who left
	// state starts at callQueued. A worker moves it to callTaken when it
	// takes the call into a batch; a caller whose deadline passes first
	// moves it to callWithdrawn. Whoever moves it first decides: a
	// withdrawn call is never written, a taken one is always answered.
	state atomic.Int32
}

const (
	callQueued int32 = iota
	callTaken
	callWithdrawn
)

type acceptResult struct {
	got     Payment
	created bool
	err     error
}

// StartBatching starts the batching: one goroutine forms batches from the
// waiting calls and cfg.Workers workers run them, each batch in one
// transaction; from then on AcceptPayment calls share transactions. It
// stops when ctx ends: cancel it only after the HTTP server has stopped, or
// the calls still waiting fail with their own deadline. The returned wait
// blocks until every batch formed has been run. Call StartBatching once,
// before serving.
func (s *Store) StartBatching(ctx context.Context, cfg BatchConfig) (wait func()) {
	cfg = cfg.withDefaults()
	s.calls = make(chan *acceptCall, cfg.Workers*cfg.MaxBatch)
	batches := make(chan []*acceptCall)
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(batches)
		s.formBatches(ctx, cfg, batches)
	})
	for range cfg.Workers {
		wg.Go(func() {
			for batch := range batches {
				s.runBatch(cfg, batch)
			}
		})
	}
	return wg.Wait
}

// acceptBatched hands p to a batch worker and waits for its answer. The
// answer is always definite: when ctx ends while the payment still waits in
// the queue, it is withdrawn and nothing is written; once a worker has taken
// it, the caller waits for the batch's answer (bounded by the batch timeout)
// even past its own deadline, rather than leave the client unsure whether
// it was accepted.
func (s *Store) acceptBatched(ctx context.Context, p NewPayment) (Payment, bool, error) {
	call := &acceptCall{ctx: ctx, p: p, done: make(chan acceptResult, 1)}
	select {
	case s.calls <- call:
	case <-ctx.Done():
		return Payment{}, false, fmt.Errorf("wait for a batch: %w", ctx.Err())
	}
	select {
	case r := <-call.done:
		return r.got, r.created, r.err
	case <-ctx.Done():
		if call.state.CompareAndSwap(callQueued, callWithdrawn) {
			return Payment{}, false, fmt.Errorf("wait for a batch: %w", ctx.Err())
		}
		s.testSignals.pastDeadline.Signal(struct{}{})
		r := <-call.done
		return r.got, r.created, r.err
	}
}

// testSignals are the events of the batching that tests wait for.
type testSignals struct {
	// pastDeadline: a caller's deadline passed after a worker took its
	// call, and the caller waits for the batch's answer.
	pastDeadline testsignal.Signal[struct{}]
}

// formBatches forms batches and hands each to the first free worker until
// ctx ends. While every worker is busy, the batch at hand keeps taking the
// calls that arrive, so batches grow with the load.
func (s *Store) formBatches(ctx context.Context, cfg BatchConfig, batches chan<- []*acceptCall) {
	// carry holds calls taken from the queue but left for the next batch,
	// because their user already had a payment in the batch being formed.
	var carry []*acceptCall
	gaps := &arrivals{}
	for {
		f := s.collect(ctx, carry, cfg.MaxBatch, cfg.Linger, gaps)
		if f.batch == nil {
			for _, c := range f.rest {
				c.done <- acceptResult{err: fmt.Errorf("gateway stopping: %w", context.Canceled)}
			}
			return
		}
		for handed := false; !handed; {
			more := s.calls
			if f.full() {
				more = nil // a nil channel never delivers: wait for a worker only
			}
			select {
			case batches <- f.batch:
				handed = true
			case c := <-more:
				f.take(c)
			}
		}
		carry = f.rest
	}
}

// forming is a batch being formed: at most max calls, at most one per
// user, so that each wallet's hold is decided against the wallet as
// locked. The calls it cannot take wait in rest for the next batch.
type forming struct {
	batch, rest []*acceptCall
	users       map[int64]bool
	max         int
	gaps        *arrivals // told of every call taken from the queue
}

func (f *forming) full() bool { return len(f.batch) == f.max }

// add puts a taken call in the batch or in rest; a call whose caller's
// deadline passed before anything was written is answered so.
func (f *forming) add(c *acceptCall) {
	switch {
	case c.ctx.Err() != nil:
		c.done <- acceptResult{err: fmt.Errorf("wait for a batch: %w", c.ctx.Err())}
	case f.users[c.p.UserID] || f.full():
		f.rest = append(f.rest, c)
	default:
		f.users[c.p.UserID] = true
		f.batch = append(f.batch, c)
	}
}

// take takes c from the queue, unless its caller has withdrawn it (and
// answered itself).
func (f *forming) take(c *acceptCall) {
	f.gaps.observe(time.Now())
	if c.state.CompareAndSwap(callQueued, callTaken) {
		f.add(c)
	}
}

// arrivals estimates the time between calls: a moving average of the gaps
// between the calls taken from the queue (one in eight weighs the newest),
// unknown (0) until the second call. Only the goroutine forming batches
// uses it.
type arrivals struct {
	last time.Time
	avg  time.Duration
}

func (a *arrivals) observe(now time.Time) {
	switch {
	case a.last.IsZero():
	case a.avg == 0:
		a.avg = now.Sub(a.last)
	default:
		a.avg += (now.Sub(a.last) - a.avg) / 8
	}
	a.last = now
}

// within says whether more calls are expected within d.
func (a *arrivals) within(d time.Duration) bool { return a.avg > 0 && a.avg < d }

// collect forms the next batch: the carried calls first, then whatever waits
// in the queue, blocking only while the batch is empty, then, while calls
// arrive less than linger apart (gaps), for up to linger more while it is
// not full. Its batch is nil when ctx ends.
func (s *Store) collect(ctx context.Context, carry []*acceptCall, max int, linger time.Duration, gaps *arrivals) *forming {
	f := &forming{users: make(map[int64]bool), max: max, gaps: gaps}
	for _, c := range carry {
		f.add(c)
	}
	for len(f.batch) == 0 {
		select {
		case c := <-s.calls:
			f.take(c)
		case <-ctx.Done():
			return f
		}
	}
	if linger > 0 && gaps.within(linger) {
		window := time.NewTimer(linger)
		defer window.Stop()
		for !f.full() {
			select {
			case c := <-s.calls:
				f.take(c)
			case <-window.C:
				return f
			case <-ctx.Done():
				return f // the calls taken are answered: the batch runs
			}
		}
		return f
	}
	for !f.full() {
		select {
		case c := <-s.calls:
			f.take(c)
		default:
			return f
		}
	}
	return f
}

// runBatch accepts batch in one transaction and answers every call; when the
// transaction fails it accepts the calls one by one instead.
func (s *Store) runBatch(cfg BatchConfig, batch []*acceptCall) {
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Timeout)
	defer cancel()
	results, err := s.acceptMany(ctx, batch)
	if err == nil {
		for i, c := range batch {
			c.done <- results[i]
		}
		if cfg.Observe != nil {
			cfg.Observe(len(batch))
		}
		return
	}
	cfg.Logger.Warn("accept batch failed; accepting its payments one by one", "payments", len(batch), "err", err)
	// The callers wait for these answers even past their own deadlines, so
	// the pass has its own: one more batch timeout for all of it. A payment
	// it does not reach gets an error with nothing written.
	ctx, cancel = context.WithTimeout(context.Background(), cfg.Timeout)
	defer cancel()
	for _, c := range batch {
		got, created, err := s.acceptOne(ctx, c.p)
		c.done <- acceptResult{got: got, created: created, err: err}
	}
}

// acceptMany accepts batch in one transaction, with the same outcome per
// payment as acceptOne, and returns the results in batch order. Every user
// appears at most once in batch. An error means nothing was committed.
func (s *Store) acceptMany(ctx context.Context, batch []*acceptCall) ([]acceptResult, error) {
	n := len(batch)
	results := make([]acceptResult, n)
	users := make([]int64, n)
	keys := make([]string, n)
	merchants := make([]int64, n)
	for i, c := range batch {
		users[i], keys[i], merchants[i] = c.p.UserID, c.p.IdempotencyKey, c.p.MerchantID
	}

	// Three round trips in all: BEGIN goes with the first batch, COMMIT
	// with the last.
	tx, err := postgres.BeginPipelined(ctx, s.pool)
	if err != nil {
		return nil, err
	}
	defer tx.Close() // rolls back unless committed

	// Round 1: lock the wallets in user order (every batch and acceptOne
	// lock in that order, so they never deadlock), and read the merchants
	// and the payments these keys already name.
	available := make(map[int64]int64, n)
	knownMerchants := make(map[int64]bool, n)
	existing := make(map[int64]Payment) // by user: one key per user here
	var b pgx.Batch
	// Plan this transaction's statements once per connection. Left to
	// choose, PostgreSQL plans a statement with an array parameter again at
	// every call (a one-element array's custom plan always looks cheaper
	// than the generic plan, which assumes ten), and at low rates, when a
	// batch holds one payment, that planning was some 0.5 ms of its CPU per
	// payment (docs/writes.md). The generic plans are the ones wanted at
	// any batch size: index look-ups per element, nested loops.
	b.Queue(`SET LOCAL plan_cache_mode = force_generic_plan`)
	b.Queue(`SELECT user_id, balance - held FROM wallets WHERE user_id = ANY($1) ORDER BY user_id FOR UPDATE`, users).
		Query(func(rows pgx.Rows) error {
			var user, avail int64
			_, err := pgx.ForEachRow(rows, []any{&user, &avail}, func() error {
				available[user] = avail
				return nil
			})
			return err
		})
	b.Queue(`SELECT id FROM merchants WHERE id = ANY($1)`, merchants).Query(func(rows pgx.Rows) error {
		var id int64
		_, err := pgx.ForEachRow(rows, []any{&id}, func() error {
			knownMerchants[id] = true
			return nil
		})
		return err
	})
	b.Queue(`SELECT `+paymentColumns+`
		FROM unnest($1::bigint[], $2::text[]) AS k(key_user, ikey)
		JOIN payments ON user_id = k.key_user AND idempotency_key = k.ikey`, users, keys).
		Query(func(rows pgx.Rows) error {
			found, err := pgx.CollectRows(rows, pgx.RowToStructByName[Payment])
			for _, p := range found {
				existing[p.UserID] = p
			}
			return err
		})
	if err := tx.Send(ctx, &b); err != nil {
		return nil, fmt.Errorf("lock wallets and read keys: %w", err)
	}

	// Decide each payment as acceptOne would, in the same order of checks,
	// and gather the columns of the ones to insert.
	var accept []int // indexes into batch of the payments to insert
	var ins struct {
		users, merchants, amounts, holds []int64
		statuses, keys, hashes           []string
		uids                             []uuid.UUID
	}
	for i, c := range batch {
		p := c.p
		hash := payment.RequestHash(p.UserID, p.MerchantID, p.Amount)
		hold := payment.HoldFor(p.Amount)
		avail, hasWallet := available[p.UserID]
		prior, replay := existing[p.UserID]
		switch {
		case !hasWallet:
			results[i].err = fmt.Errorf("user %d: %w", p.UserID, ErrUnknownUser)
		case replay && prior.RequestHash != hash:
			results[i].err = fmt.Errorf("payment %d, key %q: %w", prior.ID, p.IdempotencyKey, ErrIdempotencyKeyReuse)
		case replay:
			results[i].got = prior
		case !knownMerchants[p.MerchantID]:
			results[i].err = fmt.Errorf("insert payment: %w", ErrUnknownMerchant)
		case avail < hold:
			results[i].err = fmt.Errorf("user %d, hold %d: %w", p.UserID, hold, ErrInsufficientFunds)
		default:
			accept = append(accept, i)
			ins.users = append(ins.users, p.UserID)
			ins.merchants = append(ins.merchants, p.MerchantID)
			ins.amounts = append(ins.amounts, p.Amount)
			ins.statuses = append(ins.statuses, string(payment.StatusAccepted))
			ins.keys = append(ins.keys, p.IdempotencyKey)
			ins.hashes = append(ins.hashes, hash)
			ins.holds = append(ins.holds, hold)
			ins.uids = append(ins.uids, payment.NewUID())
		}
	}
	if len(accept) == 0 {
		return results, nil // nothing to write; the rollback releases the locks
	}

	// Round 2: insert the payments and take their holds and event numbers.
	// No ON CONFLICT: the keys were checked under the wallet locks, so a
	// conflict is unforeseen and fails the batch.
	m := len(accept)
	inserted := make(map[int64]Payment, m)
	events := make(map[int64]ledger.Event, m)
	b = pgx.Batch{}
	b.Queue(`
		INSERT INTO payments (user_id, merchant_id, amount, status, idempotency_key, request_hash, hold, uid)
		SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::bigint[], $8::uuid[])
		RETURNING `+paymentColumns,
		ins.users, ins.merchants, ins.amounts, ins.statuses, ins.keys, ins.hashes, ins.holds, ins.uids).
		Query(func(rows pgx.Rows) error {
			got, err := pgx.CollectRows(rows, pgx.RowToStructByName[Payment])
			for _, p := range got {
				inserted[p.UserID] = p
			}
			return err
		})
	b.Queue(`
		UPDATE wallets w
		SET held = w.held + v.hold, event_seq = w.event_seq + 1, updated_at = now()
		FROM unnest($1::bigint[], $2::bigint[]) AS v(user_id, hold)
		WHERE w.user_id = v.user_id AND w.balance - w.held >= v.hold
		RETURNING w.user_id, w.balance, w.held, w.event_seq`, ins.users, ins.holds).
		Query(func(rows pgx.Rows) error {
			var ev ledger.Event
			_, err := pgx.ForEachRow(rows, []any{&ev.UserID, &ev.Balance, &ev.Held, &ev.UserSeq}, func() error {
				events[ev.UserID] = ev
				return nil
			})
			return err
		})
	if err := tx.Send(ctx, &b); err != nil {
		return nil, fmt.Errorf("insert %d payments and hold: %w", m, err)
	}
	if len(inserted) != m || len(events) != m {
		return nil, fmt.Errorf("inserted %d payments and held %d wallets, want %d of each", len(inserted), len(events), m)
	}

	// Round 3: the audit rows, then the outbox records (each payment's
	// PaymentRequested, then its accepted event, in that id order), in one
	// round trip; then commit.
	var tr struct{ payments, users, seqs []int64 }
	records := make([]outbox.Record, 0, 2*m)
	for _, i := range accept {
		p := inserted[batch[i].p.UserID]
		ev := events[p.UserID]
		ev.PaymentID, ev.PaymentUID, ev.MerchantID, ev.Amount = p.ID, p.UID, p.MerchantID, p.Amount
		ev.Status, ev.OccurredAt = payment.StatusAccepted, p.CreatedAt
		tr.payments = append(tr.payments, p.ID)
		tr.users = append(tr.users, p.UserID)
		tr.seqs = append(tr.seqs, ev.UserSeq)

		requested, err := encodeRequested(p)
		if err != nil {
			return nil, err
		}
		event, err := wire.EncodeEvent(ev)
		if err != nil {
			return nil, err
		}
		key := kafka.UserKey(p.UserID)
		// Each payment's records carry its own request's trace, not the
		// batch's: the payment's trace goes on from the outbox.
		tp := outbox.NewTraceParent(batch[i].ctx)
		records = append(records,
			outbox.Record{Topic: kafka.TopicRequested, Key: key, Payload: requested, TraceParent: tp},
			outbox.Record{Topic: kafka.TopicEvents, Key: key, Payload: event, TraceParent: tp})
		results[i] = acceptResult{got: p, created: true}
	}
	// The audit rows, the outbox records, the relay's notification and the
	// commit go in one round trip: at low rates a batch holds one or two
	// payments, and each round trip costs both sides more than these
	// statements' work.
	b = pgx.Batch{}
	b.Queue(`
		INSERT INTO payment_transitions (payment_id, user_id, user_seq, from_status, to_status, actor)
		SELECT p, u, s, '', $4, $5 FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS t(p, u, s)`,
		tr.payments, tr.users, tr.seqs, payment.StatusAccepted, Actor)
	outbox.QueueMany(&b, records)
	if err := tx.Commit(ctx, &b); err != nil {
		return nil, fmt.Errorf("insert the audit rows and outbox records of %d payments and commit: %w", m, err)
	}
	return results, nil
}
