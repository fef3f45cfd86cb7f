package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/finsvc/finance/pkg/kafka"
	"github.com/finsvc/finance/pkg/pgtest"
	"github.com/finsvc/finance/pkg/testkit"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// setup returns a Store over a fresh database with the merchants 1 and 2
// and the wallets 10 (balance 1000), 11 (balance 50) and 12 (balance 0),
// and its pool, for the tests to look at the rows.
func setup(t *testing.T) (*Store, *pgxpool.Pool) {
	t.Helper()
	pool := pgtest.NewPool(t)
	for _, sql := range []string{
		`INSERT INTO merchants (id, name) VALUES (1, 'Pleo'), (2, 'Apple')`,
		`INSERT INTO wallets (user_id, balance) VALUES (10, 1000), (11, 50), (12, 0)`,
	} {
		if _, err := pool.Exec(context.Background(), sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	return New(pool), pool
}

// outcome is what a caller learns from one accept, without ids and times.
type outcome struct {
	created bool
	amount  int64
	err     string // the sentinel matched, or "" when none
}

func outcomeOf(p Payment, created bool, err error) outcome {
	for _, sentinel := range []error{ErrUnknownUser, ErrUnknownMerchant, ErrInsufficientFunds, ErrIdempotencyKeyReuse} {
		if errors.Is(err, sentinel) {
			return outcome{err: sentinel.Error()}
		}
	}
	if err != nil {
		return outcome{err: "unexpected: " + err.Error()}
	}
	return outcome{created: created, amount: p.Amount}
}

// mixed is one payment of every kind, with at most one per user, so it fits
// one batch: the earlier payments "k1" of users 10 and 11 are in the database
// before it runs.
var mixed = []NewPayment{
	{UserID: 10, MerchantID: 2, Amount: -100, IdempotencyKey: "k1"}, // replay of the earlier payment
	{UserID: 11, MerchantID: 2, Amount: -7, IdempotencyKey: "k1"},   // same key, different body
	{UserID: 12, MerchantID: 2, Amount: -1, IdempotencyKey: "k2"},   // balance 0
	{UserID: 99, MerchantID: 2, Amount: -1, IdempotencyKey: "k2"},   // no wallet
	{UserID: 13, MerchantID: 1, Amount: 500, IdempotencyKey: "k2"},  // no wallet either
}

var mixedMore = []NewPayment{
	{UserID: 10, MerchantID: 3, Amount: -1, IdempotencyKey: "k3"},  // unknown merchant
	{UserID: 11, MerchantID: 2, Amount: -30, IdempotencyKey: "k3"}, // fits 50 - 5 held
	{UserID: 12, MerchantID: 1, Amount: 250, IdempotencyKey: "k3"}, // a top-up holds nothing
}

// TestAcceptManyMatchesAcceptOne runs the same payments through one batch
// transaction and through one transaction each, on two databases, and wants
// the same answer for every payment and the same rows written.
func TestAcceptManyMatchesAcceptOne(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	earlier := []NewPayment{
		{UserID: 10, MerchantID: 2, Amount: -100, IdempotencyKey: "k1"},
		{UserID: 11, MerchantID: 2, Amount: -5, IdempotencyKey: "k1"},
	}

	one, onePool := setup(t)
	many, manyPool := setup(t)
	for _, p := range earlier {
		for _, s := range []*Store{one, many} {
			if _, _, err := s.acceptOne(ctx, p); err != nil {
				t.Fatalf("earlier payment %+v: %v", p, err)
			}
		}
	}

	for _, round := range [][]NewPayment{mixed, mixedMore} {
		var calls []*acceptCall
		for _, p := range round {
			calls = append(calls, &acceptCall{ctx: ctx, p: p, done: make(chan acceptResult, 1)})
		}
		results, err := many.acceptMany(ctx, calls)
		if err != nil {
			t.Fatalf("acceptMany: %v", err)
		}
		for i, p := range round {
			got := outcomeOf(results[i].got, results[i].created, results[i].err)
			want := outcomeOf(one.acceptOne(ctx, p))
			if got != want {
				t.Errorf("payment %+v: batch answered %+v, one by one %+v", p, got, want)
			}
		}
	}

	// The replay answers the earlier payment itself.
	var firstID int64
	if err := manyPool.QueryRow(ctx, `SELECT id FROM payments WHERE user_id = 10 AND idempotency_key = 'k1'`).Scan(&firstID); err != nil {
		t.Fatal(err)
	}

	for _, q := range []string{
		`SELECT user_id, balance, held, event_seq FROM wallets ORDER BY user_id`,
		`SELECT user_id, merchant_id, amount, status, idempotency_key, request_hash, hold FROM payments ORDER BY user_id, idempotency_key`,
		`SELECT t.user_id, t.user_seq, t.from_status, t.to_status, t.actor, p.idempotency_key
		   FROM payment_transitions t JOIN payments p ON p.id = t.payment_id ORDER BY t.user_id, t.user_seq`,
		`SELECT topic, key FROM outbox ORDER BY id`,
	} {
		a, b := dump(t, onePool, q), dump(t, manyPool, q)
		if a != b {
			t.Errorf("%s\none by one:\n%s\nbatched:\n%s", q, a, b)
		}
	}
}

// dump returns the rows of q as text.
func dump(t *testing.T, pool *pgxpool.Pool, q string) string {
	t.Helper()
	rows, err := pool.Query(context.Background(), q)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	var out string
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			t.Fatal(err)
		}
		out += fmt.Sprintln(vals...)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestBatchingConcurrentDebits sends many debits at once through the batch
// workers: exactly as many fit the balance as it allows, each key makes one
// payment, and every accepted payment has its outbox records in order.
func TestBatchingConcurrentDebits(t *testing.T) {
	t.Parallel()
	s, pool := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	wait := s.StartBatching(ctx, BatchConfig{Workers: 3, MaxBatch: 16})
	t.Cleanup(func() { cancel(); wait() })

	// User 10 has 1000: 200 debits of 30 → 33 fit. Each key is sent twice.
	// Users 1000..1099 each pay once, to fill the batches with others.
	if _, err := pool.Exec(ctx, `INSERT INTO wallets (user_id, balance) SELECT g, 100 FROM generate_series(1000, 1099) g`); err != nil {
		t.Fatal(err)
	}
	var (
		wg                 sync.WaitGroup
		mu                 sync.Mutex
		created, replayed  int
		insufficient, errs int
	)
	send := func(p NewPayment) {
		defer wg.Done()
		_, c, err := s.AcceptPayment(ctx, p)
		mu.Lock()
		defer mu.Unlock()
		switch {
		case errors.Is(err, ErrInsufficientFunds):
			insufficient++
		case err != nil:
			errs++
			t.Errorf("payment %+v: %v", p, err)
		case c:
			created++
		default:
			replayed++
		}
	}
	for i := range 200 {
		p := NewPayment{UserID: 10, MerchantID: 2, Amount: -30, IdempotencyKey: fmt.Sprintf("d%d", i)}
		wg.Add(2)
		go send(p)
		go send(p)
	}
	for u := int64(1000); u < 1100; u++ {
		wg.Add(1)
		go send(NewPayment{UserID: u, MerchantID: 2, Amount: -100, IdempotencyKey: "all-in"})
	}
	wg.Wait()

	var held, payments, seq int64
	if err := pool.QueryRow(ctx, `SELECT held, event_seq FROM wallets WHERE user_id = 10`).Scan(&held, &seq); err != nil {
		t.Fatal(err)
	}
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM payments WHERE user_id = 10`).Scan(&payments); err != nil {
		t.Fatal(err)
	}
	if payments != 33 || held != 33*30 || seq != 33 {
		t.Errorf("user 10: %d payments, held %d, event_seq %d; want 33, 990, 33", payments, held, seq)
	}
	// 33 debits of user 10 and 100 of the others were created; each created
	// key's twin was replayed, or refused when both were refused.
	if created != 133 || errs != 0 || created+replayed+insufficient != 500 {
		t.Errorf("created %d, replayed %d, insufficient %d, errors %d; want 133 created of 500 calls",
			created, replayed, insufficient, errs)
	}

	// Every payment has its PaymentRequested, then its accepted event.
	rows, _ := pool.Query(ctx, `SELECT topic, key FROM outbox ORDER BY id`)
	recs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[struct {
		Topic string
		Key   []byte
	}])
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2*133 {
		t.Fatalf("outbox has %d records, want %d", len(recs), 2*133)
	}
	pending := map[string]int{} // requests not yet followed by their event, by key
	for _, r := range recs {
		switch r.Topic {
		case kafka.TopicRequested:
			pending[string(r.Key)]++
		case kafka.TopicEvents:
			if pending[string(r.Key)] == 0 {
				t.Fatalf("an accepted event of user key %q comes before its request", r.Key)
			}
			pending[string(r.Key)]--
		}
	}
}

// TestBatchFallsBackOneByOne makes one payment of a batch fail in a way the
// batch does not foresee (a trigger refuses it): the batch rolls back, and
// its payments are accepted again one by one, so only the bad one fails.
func TestBatchFallsBackOneByOne(t *testing.T) {
	t.Parallel()
	s, pool := setup(t)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `
		CREATE FUNCTION refuse_13() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF NEW.amount = -13 THEN RAISE EXCEPTION 'refused by test trigger'; END IF;
			RETURN NEW;
		END $$;
		CREATE TRIGGER refuse_13 BEFORE INSERT ON payments FOR EACH ROW EXECUTE FUNCTION refuse_13();`); err != nil {
		t.Fatal(err)
	}
	calls := []*acceptCall{
		{ctx: ctx, p: NewPayment{UserID: 10, MerchantID: 2, Amount: -13, IdempotencyKey: "bad"}, done: make(chan acceptResult, 1)},
		{ctx: ctx, p: NewPayment{UserID: 11, MerchantID: 2, Amount: -20, IdempotencyKey: "good"}, done: make(chan acceptResult, 1)},
		{ctx: ctx, p: NewPayment{UserID: 12, MerchantID: 1, Amount: 20, IdempotencyKey: "good"}, done: make(chan acceptResult, 1)},
	}
	s.runBatch(BatchConfig{Timeout: 5 * time.Second, Logger: nil}.withDefaults(), calls)
	if r := <-calls[0].done; r.err == nil {
		t.Errorf("the refused payment was accepted: %+v", r.got)
	}
	for _, c := range calls[1:] {
		if r := <-c.done; r.err != nil || !r.created {
			t.Errorf("payment %+v: created %v, err %v; want created", c.p, r.created, r.err)
		}
	}
	var n int64
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM payments`).Scan(&n); err != nil || n != 2 {
		t.Errorf("%d payments in the database (err %v), want 2", n, err)
	}
}

// TestCollect forms batches of at most one payment per user, up to the
// maximum, and answers the calls whose caller already left without
// writing anything for them.
func TestCollect(t *testing.T) {
	t.Parallel()
	s := &Store{calls: make(chan *acceptCall, 10)}
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	call := func(ctx context.Context, user int64) *acceptCall {
		c := &acceptCall{ctx: ctx, p: NewPayment{UserID: user}, done: make(chan acceptResult, 1)}
		s.calls <- c
		return c
	}
	ctx := context.Background()
	a1, a2, b, left, c, d := call(ctx, 1), call(ctx, 1), call(ctx, 2), call(gone, 3), call(ctx, 4), call(ctx, 5)

	f := s.collect(ctx, nil, 3, 0, &arrivals{})
	batch, rest := f.batch, f.rest
	if !sameCalls(batch, a1, b, c) || !sameCalls(rest, a2) {
		t.Fatalf("batch %v, rest %v; want users [1 2 4], rest [1] (5 still queued)", users(batch), users(rest))
	}
	if r := <-left.done; !errors.Is(r.err, context.Canceled) {
		t.Errorf("the call whose caller left got %v, want context.Canceled", r.err)
	}
	f = s.collect(ctx, rest, 3, 0, &arrivals{})
	batch, rest = f.batch, f.rest
	if !sameCalls(batch, a2, d) || len(rest) != 0 {
		t.Fatalf("second batch %v, rest %v; want users [1 5], none left", users(batch), users(rest))
	}
	stopped, stop := context.WithCancel(context.Background())
	stop()
	if batch := s.collect(stopped, nil, 3, 0, &arrivals{}).batch; batch != nil {
		t.Errorf("collect after stop returned %v, want nil", users(batch))
	}
}

// TestCollectLinger keeps a batch open for the calls that come within the
// linger while calls arrive closer together than it, and closes it when it
// is full or when the linger ends; a call that arrives after a quiet spell
// goes at once.
func TestCollectLinger(t *testing.T) {
	t.Parallel()
	s := &Store{calls: make(chan *acceptCall, 10)}
	ctx := context.Background()
	call := newCall(s, ctx)
	busy := func() *arrivals { return &arrivals{last: time.Now(), avg: time.Millisecond} }
	formed := make(chan []*acceptCall)
	go func() { formed <- s.collect(ctx, nil, 2, time.Minute, busy()).batch }()
	a := call(1)
	select {
	case batch := <-formed:
		t.Fatalf("a batch of %v closed before the linger ended or a second call came", users(batch))
	case <-time.After(50 * time.Millisecond):
	}
	b := call(2)
	if batch := <-formed; !sameCalls(batch, a, b) {
		t.Fatalf("batch %v, want users [1 2]: the linger's calls in one batch", users(batch))
	}

	c := call(3)
	if batch := s.collect(ctx, nil, 2, 20*time.Millisecond, busy()).batch; !sameCalls(batch, c) {
		t.Fatalf("batch %v, want user [3] alone once the linger ended", users(batch))
	}

	// Quiet: the first call ever, then one after calls two minutes apart.
	for _, gaps := range []*arrivals{{}, {last: time.Now().Add(-2 * time.Minute), avg: 2 * time.Minute}} {
		d := call(4)
		go func() { formed <- s.collect(ctx, nil, 2, time.Minute, gaps).batch }()
		select {
		case batch := <-formed:
			if !sameCalls(batch, d) {
				t.Fatalf("batch %v, want user [4]", users(batch))
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a call after a quiet spell waited for the linger")
		}
	}
}

// TestArrivals: the average gap follows the calls, so a linger starts
// when they come close together and stops when they thin out.
func TestArrivals(t *testing.T) {
	t.Parallel()
	var a arrivals
	now := time.Now()
	if a.within(10 * time.Millisecond) {
		t.Fatal("within before any call")
	}
	for range 40 { // 250 a second
		now = now.Add(4 * time.Millisecond)
		a.observe(now)
	}
	if !a.within(10 * time.Millisecond) {
		t.Fatalf("average %s after calls 4 ms apart: want within 10 ms", a.avg)
	}
	for range 20 { // 10 a second
		now = now.Add(100 * time.Millisecond)
		a.observe(now)
	}
	if a.within(10 * time.Millisecond) {
		t.Fatalf("average %s after calls 100 ms apart: want not within 10 ms", a.avg)
	}
}

// TestBatchGrowsWhileWorkersAreBusy: a formed batch that no worker is free
// to run keeps taking the calls that arrive, up to the maximum, and the
// calls past it go in the next batch.
func TestBatchGrowsWhileWorkersAreBusy(t *testing.T) {
	t.Parallel()
	s := &Store{calls: make(chan *acceptCall, 10)}
	ctx, stop := context.WithCancel(context.Background())
	call := newCall(s, context.Background())
	batches := make(chan []*acceptCall) // no worker free until the test reads
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.formBatches(ctx, BatchConfig{MaxBatch: 3}.withDefaults(), batches)
	}()
	a := call(1)
	testkit.EventuallyWithin(t, 10*time.Second, "the first call taken", func() bool { return len(s.calls) == 0 })
	b, c, d := call(2), call(3), call(4)
	// The waiting batch takes two and is full: the third stays queued.
	testkit.EventuallyWithin(t, 10*time.Second, "the waiting batch filled", func() bool { return len(s.calls) == 1 })
	if batch := <-batches; !sameCalls(batch, a, b, c) {
		t.Fatalf("first batch %v, want users [1 2 3]: grown while no worker was free", users(batch))
	}
	if batch := <-batches; !sameCalls(batch, d) {
		t.Fatalf("second batch %v, want user [4]", users(batch))
	}
	stop()
	<-done
}

func newCall(s *Store, ctx context.Context) func(user int64) *acceptCall {
	return func(user int64) *acceptCall {
		c := &acceptCall{ctx: ctx, p: NewPayment{UserID: user}, done: make(chan acceptResult, 1)}
		s.calls <- c
		return c
	}
}

func sameCalls(got []*acceptCall, want ...*acceptCall) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i] != want[i] {
			return false
		}
	}
	return true
}

func users(calls []*acceptCall) []int64 {
	var out []int64
	for _, c := range calls {
		out = append(out, c.p.UserID)
	}
	return out
}

// BenchmarkAccept measures one payment accepted in a transaction of its own
// (acceptOne, the fallback path: "one") against payments accepted by the
// batch path (acceptMany) in batches of 1 (what a quiet gateway's batches
// hold), 10, 100 and 500: ns/op is per payment. Besides time it reports the
// CPU per payment of this process and of the database's backends
// (cpu-µs/payment, db-cpu-µs/payment). It needs PostgreSQL (PGTEST_URL) on
// this machine.
//
//	go test -run '^$' -bench Accept -benchtime 3000x ./internal/store/
func BenchmarkAccept(b *testing.B) {
	for _, size := range []int{0, 1, 10, 100, 500} {
		name := fmt.Sprintf("batch=%d", size)
		if size == 0 {
			name = "one"
		}
		b.Run(name, func(b *testing.B) {
			pool := pgtest.NewPool(b)
			ctx := context.Background()
			// 20 settled payments per user, then the statistics, as a
			// seeded database has them (financectl seed ends with VACUUM
			// ANALYZE): without them the planner scans the payments.
			if _, err := pool.Exec(ctx, `INSERT INTO merchants (id, name) VALUES (2, 'Apple');
				INSERT INTO wallets (user_id, balance) SELECT g, 1000000000 FROM generate_series(1, 500) g;
				INSERT INTO payments (user_id, merchant_id, amount, status, idempotency_key, request_hash, source)
				SELECT u, 2, 1, 'succeeded', 'seed-' || k, '', 'seed' FROM generate_series(1, 500) u, generate_series(1, 20) k;
				ANALYZE merchants, wallets, payments`); err != nil {
				b.Fatal(err)
			}
			s := New(pool)
			n := 0
			cpu := pgtest.StartCPU(b, pool)
			b.ResetTimer()
			for b.Loop() {
				if size == 0 {
					n++
					if _, _, err := s.acceptOne(ctx, NewPayment{UserID: 1, MerchantID: 2, Amount: -1, IdempotencyKey: fmt.Sprint(n)}); err != nil {
						b.Fatal(err)
					}
					continue
				}
				calls := make([]*acceptCall, size)
				for i := range calls {
					n++
					calls[i] = &acceptCall{ctx: ctx, done: make(chan acceptResult, 1),
						p: NewPayment{UserID: int64(i + 1), MerchantID: 2, Amount: -1, IdempotencyKey: fmt.Sprint(n)}}
				}
				if _, err := s.acceptMany(ctx, calls); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/payment")
			cpu.Report(b, n, "payment")
		})
	}
}

// TestDeadlineInQueueWithdraws: a call whose deadline passes while it still
// waits in the queue is withdrawn, answered with the deadline, and never
// taken into a batch.
func TestDeadlineInQueueWithdraws(t *testing.T) {
	t.Parallel()
	s := &Store{calls: make(chan *acceptCall, 10)}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, _, err := s.acceptBatched(ctx, NewPayment{UserID: 1}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want context.DeadlineExceeded", err)
	}
	withdrawn := <-s.calls
	if got := withdrawn.state.Load(); got != callWithdrawn {
		t.Fatalf("state = %d, want withdrawn", got)
	}
	other := &acceptCall{ctx: context.Background(), p: NewPayment{UserID: 2}, done: make(chan acceptResult, 1)}
	s.calls <- withdrawn
	s.calls <- other
	f := s.collect(context.Background(), nil, 10, 0, &arrivals{})
	batch, rest := f.batch, f.rest
	if !sameCalls(batch, other) || len(rest) != 0 || len(withdrawn.done) != 0 {
		t.Errorf("batch %v, rest %v, withdrawn call answered %d times; want only user 2, never the withdrawn call",
			users(batch), users(rest), len(withdrawn.done))
	}
}

// TestDeadlineInBatchWaitsForAnswer: once a worker has taken a call, the
// caller gets the batch's answer even after its own deadline, so that it
// never answers "timeout" for a payment that was in fact accepted.
func TestDeadlineInBatchWaitsForAnswer(t *testing.T) {
	t.Parallel()
	s := &Store{calls: make(chan *acceptCall, 10)}
	s.testSignals.pastDeadline.Init(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	type answer struct {
		created bool
		err     error
	}
	answered := make(chan answer, 1)
	go func() {
		_, created, err := s.acceptBatched(ctx, NewPayment{UserID: 1})
		answered <- answer{created, err}
	}()
	batch := s.collect(context.Background(), nil, 10, 0, &arrivals{}).batch
	if len(batch) != 1 {
		t.Fatalf("batch %v, want the one call", users(batch))
	}
	s.testSignals.pastDeadline.WaitOrTimeout(t) // the caller has seen its deadline, and waits
	batch[0].done <- acceptResult{got: Payment{ID: 7}, created: true}
	if a := <-answered; a.err != nil || !a.created {
		t.Errorf("answer created=%v err=%v, want the batch's: created", a.created, a.err)
	}
}

// TestAcceptPlansOnce wants a batch transaction's statements planned once
// per connection, not at every call: PostgreSQL would otherwise plan each
// statement with an array parameter anew whenever the array holds one
// element, as it does at low rates, and that planning cost more CPU than
// the writes (docs/writes.md). It accepts payments one batch each on a
// pool of one connection, then reads that connection's prepared
// statements.
func TestAcceptPlansOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg, err := pgxpool.ParseConfig(pgtest.NewDB(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 1
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, err := pool.Exec(ctx, `INSERT INTO merchants (id, name) VALUES (1, 'Pleo');
		INSERT INTO wallets (user_id, balance) VALUES (10, 1000)`); err != nil {
		t.Fatal(err)
	}
	s := New(pool)
	const calls = 8 // more than the 5 custom plans PostgreSQL tries before it may choose
	for i := range calls {
		call := &acceptCall{ctx: ctx, p: NewPayment{UserID: 10, MerchantID: 1, Amount: -1, IdempotencyKey: fmt.Sprint("k", i)},
			done: make(chan acceptResult, 1)}
		results, err := s.acceptMany(ctx, []*acceptCall{call})
		if err != nil || results[0].err != nil || !results[0].created {
			t.Fatalf("payment %d: %+v, %v", i, results, err)
		}
	}
	rows, err := pool.Query(ctx, `SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements
		WHERE statement ~ '(ANY|unnest)\(\$1'`)
	if err != nil {
		t.Fatal(err)
	}
	type plans struct {
		Statement       string
		Generic, Custom int64
	}
	seen, err := pgx.CollectRows(rows, pgx.RowToStructByPos[plans])
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) < 5 {
		t.Fatalf("%d statements with array parameters prepared, want the batch's 5 at least: %+v", len(seen), seen)
	}
	for _, p := range seen {
		if p.Custom != 0 || p.Generic != calls {
			t.Errorf("%d calls planned %d times for these values and %d times generically, want 0 and %d:\n%s",
				calls, p.Custom, p.Generic, calls, p.Statement)
		}
	}
}
