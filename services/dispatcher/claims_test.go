package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/finsvc/finance/pkg/dlq"
	"github.com/finsvc/finance/pkg/kafkatest"
	"github.com/finsvc/finance/pkg/payment"
	"github.com/finsvc/finance/pkg/pgtest"
	"github.com/finsvc/finance/pkg/stacktest"
	"github.com/finsvc/finance/pkg/wire"
	"github.com/finsvc/finance/services/dispatcher/internal/dispatcher"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func openPool(t *testing.T, url string) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 2
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// seedPayments inserts the payments of reqs (and their wallets and merchant)
// as the gateway would have before publishing them.
func seedPayments(t *testing.T, pool *pgxpool.Pool, reqs ...wire.Requested) {
	t.Helper()
	ctx := t.Context()
	if _, err := pool.Exec(ctx, `INSERT INTO merchants (id, name) VALUES (1, 'test') ON CONFLICT DO NOTHING`); err != nil {
		t.Fatalf("seed merchant: %v", err)
	}
	for _, r := range reqs {
		if _, err := pool.Exec(ctx, `INSERT INTO wallets (user_id) VALUES ($1) ON CONFLICT DO NOTHING`, r.UserID); err != nil {
			t.Fatalf("seed wallet %d: %v", r.UserID, err)
		}
		if r.Amount == 0 {
			continue // invalid: failed without reaching the guard, and no row could hold it
		}
		if _, err := pool.Exec(ctx,
			`INSERT INTO payments (id, uid, user_id, merchant_id, amount, status, idempotency_key, request_hash)
			 VALUES ($1, $2, $3, 1, $4, 'accepted', $5, '') ON CONFLICT DO NOTHING`,
			r.PaymentID, r.PaymentUID, r.UserID, r.Amount, fmt.Sprintf("client-%d", r.PaymentID)); err != nil {
			t.Fatalf("seed payment %d: %v", r.PaymentID, err)
		}
	}
}

// claims returns payment id → claimed_by of every dispatch claim.
func claims(t *testing.T, pool *pgxpool.Pool) map[int64]string {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT payment_id, claimed_by FROM dispatch_claims`)
	if err != nil {
		t.Fatalf("read claims: %v", err)
	}
	defer rows.Close()
	m := map[int64]string{}
	for rows.Next() {
		var id int64
		var by string
		if err := rows.Scan(&id, &by); err != nil {
			t.Fatal(err)
		}
		m[id] = by
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return m
}

// A payment whose claim is already there was possibly sent by an earlier
// owner that crashed or lost its partition with the call in flight: with the
// as-is API it is never sent again and ends unknown, dead-lettered. Fresh
// payments are claimed, then sent exactly once.
func TestAsIsRedeliveredPaymentIsNeverSentAgain(t *testing.T) {
	t.Parallel()
	cluster := kafkatest.New(t, 2, testTopics)
	fake, url := newFakeProcessor(t, nil)
	opsAddr := stacktest.FreeAddr(t)
	env := dispatcherEnv(t, cluster.Brokers(), url, "as-is", opsAddr)
	pool := openPool(t, env["DATABASE_URL"])

	users := []int64{701, 702, 703}
	reqs := requestsFor(users, 0, 3)
	const redeliveredID = 702002 // user 702's second payment
	seedPayments(t, pool, reqs...)
	if _, err := pool.Exec(t.Context(), `INSERT INTO dispatch_claims (payment_id, claimed_by) VALUES ($1, 'dispatcher-crashed')`, redeliveredID); err != nil {
		t.Fatal(err)
	}
	// Every call must find its claim already committed.
	var mu sync.Mutex
	var unclaimedCalls []int64
	fake.onCall = func(id int64) {
		var n int
		if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM dispatch_claims WHERE payment_id = $1`, id).Scan(&n); err != nil || n != 1 {
			mu.Lock()
			unclaimedCalls = append(unclaimedCalls, id)
			mu.Unlock()
		}
	}

	outcomes := newOutcomeReader(t, cluster.Brokers())
	letters := newDLQReader(t, cluster.Brokers())
	start := time.Now()
	produceRequests(t, env, newProducer(t, cluster.Brokers()), reqs...)
	stop := startDispatcher(t, env)
	outcomes.waitUntil(t, "every final outcome", func(got []wire.Outcome) bool { return countFinals(got) >= len(reqs) })
	letters.waitFor(t, 1)
	waitMetrics(t, opsAddr, `dispatcher_dead_letters_total{reason="as_is_redelivered"} 1`,
		fmt.Sprintf(`dispatcher_guard_total{result="send"} %d`, len(reqs)-1),
		`dispatcher_guard_total{result="claimed"} 1`)
	stop()

	got := finals(t, outcomes.got)
	_, calls := fake.snapshot()
	held := claims(t, pool)
	for _, r := range reqs {
		id := r.PaymentID
		o := got[id]
		if id == redeliveredID {
			if o.Status != payment.StatusUnknown ||
				!strings.Contains(o.Reason, "may already have been sent to the processor (as-is API, redelivered)") {
				t.Errorf("redelivered payment outcome = %v, want unknown: may already have been sent", o)
			}
			if n := calls[id]; n != 0 {
				t.Errorf("redelivered payment %d called %d times, want never", id, n)
			}
			if held[id] != "dispatcher-crashed" {
				t.Errorf("redelivered payment's claim by %q, want the earlier owner's", held[id])
			}
			continue
		}
		status, ref := wantOutcome(id)
		if o.Status != status || o.ProcessorRef != ref {
			t.Errorf("payment %d outcome = %v, want %v %q", id, o, status, ref)
		}
		if n := calls[id]; n != 1 {
			t.Errorf("payment %d called %d times, want exactly 1", id, n)
		}
		if held[id] != "dispatcher-test" {
			t.Errorf("payment %d claimed by %q, want dispatcher-test", id, held[id])
		}
	}
	mu.Lock()
	if len(unclaimedCalls) > 0 {
		t.Errorf("processor called for payments %v without a committed claim", unclaimedCalls)
	}
	mu.Unlock()
	// The user's later payments went on behind the unknown one, in order.
	sent := slices.DeleteFunc(slices.Clone(reqs), func(r wire.Requested) bool { return r.PaymentID == redeliveredID })
	order, _ := fake.snapshot()
	if diff := cmp.Diff(byUser(sent), order); diff != "" {
		t.Errorf("processor calls per user (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(byUser(reqs), finalsByUser(outcomes.got)); diff != "" {
		t.Errorf("outcome order per user (-want +got):\n%s", diff)
	}

	letters.drain(t, 500*time.Millisecond)
	if len(letters.got) != 1 {
		t.Fatalf("%d dead letters, want 1 (the redelivered payment's)", len(letters.got))
	}
	h := headers(letters.got[0])
	if h[dlq.HeaderReason] != dispatcher.CauseRedelivered || h[dlq.HeaderPaymentID] != fmt.Sprint(redeliveredID) {
		t.Errorf("dead letter reason %q payment %q, want %s and %d", h[dlq.HeaderReason], h[dlq.HeaderPaymentID], dispatcher.CauseRedelivered, redeliveredID)
	}
	if !strings.Contains(h[dlq.HeaderError], "may already have been sent") {
		t.Errorf("dead letter error %q, want the unknown outcome's reason", h[dlq.HeaderError])
	}
	if first, err := time.Parse(time.RFC3339Nano, h[dlq.HeaderFirstSeen]); err != nil || first.Before(start.Add(-time.Second)) {
		t.Errorf("dead letter first seen %q (%v), want after the test began", h[dlq.HeaderFirstSeen], err)
	}
}

// Only payments this database accepted, and not final yet, reach the
// processor, whatever the topic holds (issue 10: stale records; issue 11:
// replays and rewinds), with either API:
//   - a record whose payment id the database never had,
//   - a record whose id the database holds under another uid (ids repeat
//     after a restore; uids never do),
//   - a record without a uid (made before migration 00004)
//
// are dead-lettered as stale and never sent; a record of a payment that
// already succeeded or failed is not sent and publishes nothing. The user's
// other payments go on.
func TestGuardSendsOnlyOpenPaymentsOfThisDatabase(t *testing.T) {
	t.Parallel()
	for _, api := range []string{"proposed", "as-is"} {
		t.Run(api, func(t *testing.T) {
			t.Parallel()
			cluster := kafkatest.New(t, 2, testTopics)
			fake, url := newFakeProcessor(t, nil)
			opsAddr := stacktest.FreeAddr(t)
			env := dispatcherEnv(t, cluster.Brokers(), url, api, opsAddr)
			pool := openPool(t, env["DATABASE_URL"])

			open := requestsFor([]int64{801}, 0, 3) // 801001..801003
			final := []wire.Requested{request(801, 801101), request(801, 801102)}
			seedPayments(t, pool, final...)
			if _, err := pool.Exec(t.Context(), `UPDATE payments SET status = CASE id WHEN 801101 THEN 'succeeded' ELSE 'failed' END
				WHERE id IN (801101, 801102)`); err != nil {
				t.Fatal(err)
			}
			neverAccepted := request(801, 801201)
			otherDatabase := request(801, 801002) // open[1]'s id, another payment's uid
			otherDatabase.PaymentUID = payment.NewUID().String()
			noUID := request(801, 801202)
			noUID.PaymentUID = ""

			outcomes := newOutcomeReader(t, cluster.Brokers())
			prod := newProducer(t, cluster.Brokers())
			produceRecords(t, prod, neverAccepted, otherDatabase, noUID)
			produceRecords(t, prod, final...)
			produceRequests(t, env, prod, open...)
			startDispatcher(t, env)
			outcomes.waitUntil(t, "the open payments' outcomes", func(got []wire.Outcome) bool { return countFinals(got) >= len(open) })
			waitMetrics(t, opsAddr,
				`dispatcher_dead_letters_total{reason="stale"} 3`,
				`dispatcher_guard_total{result="stale"} 2`,
				`dispatcher_guard_total{result="final"} 2`,
				fmt.Sprintf(`dispatcher_guard_total{result="send"} %d`, len(open)))

			_, calls := fake.snapshot()
			for _, r := range open {
				if calls[r.PaymentID] != 1 {
					t.Errorf("open payment %d called %d times, want 1", r.PaymentID, calls[r.PaymentID])
				}
			}
			for _, id := range []int64{801101, 801102, 801201, 801202} {
				if calls[id] != 0 {
					t.Errorf("payment %d called %d times, want never", id, calls[id])
				}
			}
			got := finals(t, outcomes.got)
			if len(got) != len(open) {
				t.Errorf("final outcomes for %d payments, want %d (the open ones only)", len(got), len(open))
			}
			for _, o := range outcomes.got {
				if o.PaymentID == 801002 && o.PaymentUID != open[1].PaymentUID {
					t.Errorf("outcome for payment 801002 names uid %s, want the database's %s", o.PaymentUID, open[1].PaymentUID)
				}
				if id := o.PaymentID; id == 801101 || id == 801102 {
					t.Errorf("final payment %d got an outcome %v", id, o.Status)
				}
			}
		})
	}
}

// With the proposed API the processor keeps a key for PROCESSOR_KEY_RETENTION
// (24 h): a payment that may have been sent (processing or unknown) and was
// accepted longer ago is not sent again by a rewound or replayed record, since
// its key may have expired and a second call could execute it twice. It ends
// unknown, dead-lettered key_expired for the reconciler (issue 11).
func TestGuardKeyExpiredIsNotSentAgain(t *testing.T) {
	t.Parallel()
	cluster := kafkatest.New(t, 2, testTopics)
	fake, url := newFakeProcessor(t, nil)
	opsAddr := stacktest.FreeAddr(t)
	env := dispatcherEnv(t, cluster.Brokers(), url, "proposed", opsAddr)
	pool := openPool(t, env["DATABASE_URL"])

	reqs := requestsFor([]int64{821, 822, 823, 824}, 0, 2)
	seedPayments(t, pool, reqs...)
	// The first payment of each user, with the status and age its
	// replayed record finds.
	seeded := map[int64]struct {
		status payment.Status
		age    time.Duration
	}{
		821001: {payment.StatusProcessing, 25 * time.Hour}, // may have been sent, key may be gone
		822001: {payment.StatusUnknown, 25 * time.Hour},    // likewise
		823001: {payment.StatusAccepted, 25 * time.Hour},   // never sent: sent now
		824001: {payment.StatusProcessing, time.Hour},      // its key is surely kept: a replay
	}
	for id, s := range seeded {
		if _, err := pool.Exec(t.Context(), `UPDATE payments SET status = $2, created_at = now() - $3::bigint * interval '1 microsecond' WHERE id = $1`,
			id, s.status, s.age.Microseconds()); err != nil {
			t.Fatal(err)
		}
	}
	expired := map[int64]bool{821001: true, 822001: true}

	outcomes := newOutcomeReader(t, cluster.Brokers())
	letters := newDLQReader(t, cluster.Brokers())
	produceRecords(t, newProducer(t, cluster.Brokers()), reqs...)
	stop := startDispatcher(t, env)
	outcomes.waitUntil(t, "every final outcome", func(got []wire.Outcome) bool { return countFinals(got) >= len(reqs) })
	letters.waitFor(t, len(expired))
	waitMetrics(t, opsAddr,
		`dispatcher_guard_total{result="key_expired"} 2`,
		fmt.Sprintf(`dispatcher_guard_total{result="send"} %d`, len(reqs)-len(expired)),
		`dispatcher_dead_letters_total{reason="key_expired"} 2`)
	stop()

	got := finals(t, outcomes.got)
	_, calls := fake.snapshot()
	for _, r := range reqs {
		id := r.PaymentID
		o := got[id]
		if expired[id] {
			if o.Status != payment.StatusUnknown || o.Reason != dispatcher.ReasonKeyExpired || o.Attempts != 0 {
				t.Errorf("payment %d (may have been sent, key may be gone): outcome %v, want unknown: %s", id, o, dispatcher.ReasonKeyExpired)
			}
			if n := calls[id]; n != 0 {
				t.Errorf("payment %d called %d times, want never", id, n)
			}
			continue
		}
		status, ref := wantOutcome(id)
		if o.Status != status || o.ProcessorRef != ref {
			t.Errorf("payment %d outcome = %v, want %v %q", id, o, status, ref)
		}
		if n := calls[id]; n != 1 {
			t.Errorf("payment %d called %d times, want 1", id, n)
		}
	}
	letters.drain(t, 500*time.Millisecond)
	if len(letters.got) != len(expired) {
		t.Fatalf("%d dead letters, want %d", len(letters.got), len(expired))
	}
	for _, l := range letters.got {
		h := headers(l)
		id, _ := strconv.ParseInt(h[dlq.HeaderPaymentID], 10, 64)
		if !expired[id] || h[dlq.HeaderReason] != dispatcher.CauseKeyExpired || h[dlq.HeaderAttempts] != "0" {
			t.Errorf("dead letter of payment %q reason %q attempts %q, want one of the expired payments, %s, 0", h[dlq.HeaderPaymentID], h[dlq.HeaderReason], h[dlq.HeaderAttempts], dispatcher.CauseKeyExpired)
		}
	}
}

// A payment whose guard cannot read the database for DISPATCHER_GUARD_RETRY_FOR
// is not sent, and ends unknown (dead-lettered guard_failed), never failed:
// an earlier owner may have sent it, and only the database could have said.
func TestGuardThatCannotReadTheDatabaseEndsUnknown(t *testing.T) {
	t.Parallel()
	cluster := kafkatest.New(t, 2, testTopics)
	fake, url := newFakeProcessor(t, nil)
	opsAddr := stacktest.FreeAddr(t)
	env := dispatcherEnv(t, cluster.Brokers(), url, "proposed", opsAddr)
	env["DISPATCHER_GUARD_RETRY_FOR"] = "500ms"
	pool := openPool(t, env["DATABASE_URL"])
	reqs := requestsFor([]int64{831}, 0, 1)
	seedPayments(t, pool, reqs...)
	// Every read of payments now fails, as with a broken database.
	if _, err := pool.Exec(t.Context(), `ALTER TABLE payments RENAME TO payments_unreadable`); err != nil {
		t.Fatal(err)
	}
	outcomes := newOutcomeReader(t, cluster.Brokers())
	produceRecords(t, newProducer(t, cluster.Brokers()), reqs...)
	startDispatcher(t, env)
	outcomes.waitUntil(t, "the outcome", func(got []wire.Outcome) bool { return countFinals(got) >= 1 })
	waitMetrics(t, opsAddr, `dispatcher_guard_total{result="error"} 1`, `dispatcher_dead_letters_total{reason="guard_failed"} 1`)
	o := finals(t, outcomes.got)[reqs[0].PaymentID]
	if o.Status != payment.StatusUnknown || !strings.Contains(o.Reason, "dispatch guard could not read") {
		t.Errorf("outcome %v, want unknown: the guard could not read the payment", o)
	}
	if _, calls := fake.snapshot(); calls[reqs[0].PaymentID] != 0 {
		t.Errorf("payment called %d times, want never", calls[reqs[0].PaymentID])
	}
}
