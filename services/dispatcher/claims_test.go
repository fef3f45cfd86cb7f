package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/finsvc/finance/pkg/dlq"
	"github.com/finsvc/finance/pkg/kafkatest"
	"github.com/finsvc/finance/pkg/pgtest"
	financev1 "github.com/finsvc/finance/proto/finance/v1"
	"github.com/finsvc/finance/services/dispatcher/internal/dispatcher"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// withClaimsDB gives an as-is dispatcher under test its own migrated
// database (DATABASE_URL in env) and returns a function that creates the
// payments rows its requests need: a claim references its payment.
func withClaimsDB(t *testing.T, env map[string]string) (seed func(...*financev1.PaymentRequested)) {
	t.Helper()
	url := pgtest.NewDB(t)
	env["DATABASE_URL"] = url
	pool := openPool(t, url)
	return func(reqs ...*financev1.PaymentRequested) {
		t.Helper()
		seedPayments(t, pool, reqs...)
	}
}

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
func seedPayments(t *testing.T, pool *pgxpool.Pool, reqs ...*financev1.PaymentRequested) {
	t.Helper()
	ctx := t.Context()
	if _, err := pool.Exec(ctx, `INSERT INTO merchants (id, name) VALUES (1, 'test') ON CONFLICT DO NOTHING`); err != nil {
		t.Fatalf("seed merchant: %v", err)
	}
	for _, r := range reqs {
		if _, err := pool.Exec(ctx, `INSERT INTO wallets (user_id) VALUES ($1) ON CONFLICT DO NOTHING`, r.GetUserId()); err != nil {
			t.Fatalf("seed wallet %d: %v", r.GetUserId(), err)
		}
		if _, err := pool.Exec(ctx,
			`INSERT INTO payments (id, user_id, merchant_id, amount, status, idempotency_key, request_hash)
			 VALUES ($1, $2, 1, $3, 'accepted', $4, '')`,
			r.GetPaymentId(), r.GetUserId(), r.GetAmount(), fmt.Sprintf("client-%d", r.GetPaymentId())); err != nil {
			t.Fatalf("seed payment %d: %v", r.GetPaymentId(), err)
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
	opsAddr := freeAddr(t)
	env := dispatcherEnv(cluster.Brokers(), url, "as-is", opsAddr)
	seed := withClaimsDB(t, env)
	pool := openPool(t, env["DATABASE_URL"])

	users := []int64{701, 702, 703}
	reqs := requestsFor(users, 0, 3)
	seed(reqs...)
	const redeliveredID = 702002 // user 702's second payment
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
	produceRequests(t, newProducer(t, cluster.Brokers()), reqs...)
	stop := startDispatcher(t, env)
	outcomes.waitUntil(t, "every final outcome", func(got []*financev1.PaymentOutcome) bool { return countFinals(got) >= len(reqs) })
	letters.waitFor(t, 1)
	waitMetrics(t, opsAddr, `dispatcher_dead_letters_total{reason="as_is_redelivered"} 1`,
		fmt.Sprintf(`dispatcher_dispatch_claims_total{result="claimed"} %d`, len(reqs)-1),
		`dispatcher_dispatch_claims_total{result="conflict"} 1`)
	stop()

	got := finals(t, outcomes.got)
	_, calls := fake.snapshot()
	held := claims(t, pool)
	for _, r := range reqs {
		id := r.GetPaymentId()
		o := got[id]
		if id == redeliveredID {
			if o.GetStatus() != financev1.OutcomeStatus_OUTCOME_STATUS_UNKNOWN ||
				!strings.Contains(o.GetReason(), "may already have been sent to the processor (as-is API, redelivered)") {
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
		if o.GetStatus() != status || o.GetProcessorRef() != ref {
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
	wantCalls, wantOutcomes := map[int64][]int64{}, map[int64][]int64{}
	for _, r := range reqs {
		if r.GetPaymentId() != redeliveredID {
			wantCalls[r.GetUserId()] = append(wantCalls[r.GetUserId()], r.GetPaymentId())
		}
		wantOutcomes[r.GetUserId()] = append(wantOutcomes[r.GetUserId()], r.GetPaymentId())
	}
	order, _ := fake.snapshot()
	if diff := cmp.Diff(wantCalls, order); diff != "" {
		t.Errorf("processor calls per user (-want +got):\n%s", diff)
	}
	gotOutcomes := map[int64][]int64{}
	for _, o := range outcomes.got {
		if isFinal(o) {
			gotOutcomes[o.GetUserId()] = append(gotOutcomes[o.GetUserId()], o.GetPaymentId())
		}
	}
	if diff := cmp.Diff(wantOutcomes, gotOutcomes); diff != "" {
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

// An as-is payment with no payments row cannot be claimed: it is never sent
// and is dead-lettered; its user's later payments go on.
func TestAsIsPaymentWithoutRowIsNotSent(t *testing.T) {
	t.Parallel()
	cluster := kafkatest.New(t, 2, testTopics)
	fake, url := newFakeProcessor(t, nil)
	opsAddr := freeAddr(t)
	env := dispatcherEnv(cluster.Brokers(), url, "as-is", opsAddr)
	seed := withClaimsDB(t, env)
	reqs := requestsFor([]int64{801}, 0, 3)
	const missingID = 801001
	seed(reqs[1:]...)
	produceRequests(t, newProducer(t, cluster.Brokers()), reqs...)
	startDispatcher(t, env)
	outcomes := newOutcomeReader(t, cluster.Brokers())
	outcomes.waitUntil(t, "the seeded payments' outcomes", func(got []*financev1.PaymentOutcome) bool { return countFinals(got) >= 2 })
	waitMetrics(t, opsAddr, `dispatcher_dead_letters_total{reason="payment_not_found"} 1`)
	if _, calls := fake.snapshot(); calls[missingID] != 0 || calls[801002] != 1 || calls[801003] != 1 {
		t.Errorf("calls = %v, want none for %d and one for each other payment", calls, missingID)
	}
	if o, ok := finals(t, outcomes.got)[missingID]; ok {
		t.Errorf("payment %d without a row has outcome %v, want only a dead letter", missingID, o)
	}
}

func TestAsIsRequiresDatabaseURL(t *testing.T) {
	t.Parallel()
	env := map[string]string{"PROCESSOR_API": "as-is"}
	_, err := loadConfig(func(k string) string { return env[k] })
	if err == nil || !strings.Contains(err.Error(), "DATABASE_URL: required with PROCESSOR_API=as-is") {
		t.Fatalf("loadConfig = %v, want DATABASE_URL required", err)
	}
	// The proposed API is safe through its idempotency key: no database.
	env["PROCESSOR_API"] = "proposed"
	if _, err := loadConfig(func(k string) string { return env[k] }); err != nil {
		t.Fatalf("loadConfig with the proposed API and no DATABASE_URL = %v, want nil", err)
	}
}
