package reconcile_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/finsvc/finance/pkg/ledger"
	"github.com/finsvc/finance/pkg/outbox"
	"github.com/finsvc/finance/pkg/pgtest"
	"github.com/finsvc/finance/pkg/reconcile"
	"github.com/finsvc/finance/pkg/verify"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

const user = 10

// unknownPayment is a debit of user 10 left unknown by the dispatcher.
type unknownPayment struct {
	id, amount int64
	age        time.Duration // since accepted
	unknownFor time.Duration // since it became unknown
}

// seed writes user 10 with a settled balance of 10000 (a seed payment and
// its entry) and the unknown payments, each holding its amount, with their
// audit rows (accepted, unknown).
func seed(t *testing.T, ps []unknownPayment, extraSQL ...string) *pgxpool.Pool {
	t.Helper()
	pool := pgtest.NewPool(t)
	var b strings.Builder
	held := int64(0)
	for _, p := range ps {
		held += -p.amount
	}
	fmt.Fprintf(&b, `
		INSERT INTO merchants (id, name) VALUES (1, 'Pleo'), (2, 'Apple');
		INSERT INTO wallets (user_id, balance, held, event_seq) VALUES (%d, 10000, %d, %d);
		INSERT INTO payments (id, user_id, merchant_id, amount, status, idempotency_key, request_hash, source)
		VALUES (1, %[1]d, 1, 10000, 'succeeded', 'seed', 'h', 'seed');
		INSERT INTO entries (user_id, payment_id, merchant_id, amount, occurred_at) VALUES (%[1]d, 1, 1, 10000, now());
		`, user, held, 2*len(ps))
	for i, p := range ps {
		fmt.Fprintf(&b, `
		INSERT INTO payments (id, user_id, merchant_id, amount, status, idempotency_key, request_hash, hold, failure_reason, created_at, updated_at)
		VALUES (%[1]d, %[2]d, 2, %[3]d, 'unknown', 'k-%[1]d', 'h', %[4]d, 'processor timeout', now() - %[5]d * interval '1 microsecond', now() - %[6]d * interval '1 microsecond');
		INSERT INTO payment_transitions (payment_id, user_id, user_seq, from_status, to_status, actor, reason) VALUES
			(%[1]d, %[2]d, %[7]d, '', 'accepted', 'gateway', ''), (%[1]d, %[2]d, %[8]d, 'accepted', 'unknown', 'status-consumer', 'processor timeout');
		`, p.id, user, p.amount, -p.amount, p.age.Microseconds(), p.unknownFor.Microseconds(), 2*i+1, 2*i+2)
	}
	for _, s := range append([]string{b.String()}, extraSQL...) {
		if _, err := pool.Exec(context.Background(), s); err != nil {
			t.Fatalf("seed: %v\n%s", err, s)
		}
	}
	return pool
}

// fakeProcessor serves GET /v2/payments/{key} from a map, 404 not_found
// otherwise, and counts lookups.
type fakeProcessor struct {
	resources map[string]reconcile.Resource
	lookups   atomic.Int64
}

func (f *fakeProcessor) serve(t *testing.T) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key, ok := strings.CutPrefix(r.URL.Path, "/v2/payments/")
		if !ok || r.Method != http.MethodGet {
			http.NotFound(w, r)
			return
		}
		f.lookups.Add(1)
		w.Header().Set("Content-Type", "application/json")
		res, ok := f.resources[key]
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"error":"not_found"}`))
			return
		}
		res.IdempotencyKey = key
		_ = json.NewEncoder(w).Encode(res)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

type paymentState struct {
	Status string
	Hold   int64
	Reason string
}

type transition struct {
	From, To, Actor, Reason string
	UserSeq                 int64
}

type state struct {
	Balance, Held, EventSeq int64
	Payments                map[int64]paymentState
	Entries                 map[int64]int64 // payment id → amount
	Transitions             map[int64][]transition
	Outbox                  int64
}

func readState(t *testing.T, pool *pgxpool.Pool) state {
	t.Helper()
	ctx := context.Background()
	s := state{Payments: map[int64]paymentState{}, Entries: map[int64]int64{}, Transitions: map[int64][]transition{}}
	if err := pool.QueryRow(ctx, `SELECT balance, held, event_seq, (SELECT count(*) FROM outbox) FROM wallets WHERE user_id = $1`, user).
		Scan(&s.Balance, &s.Held, &s.EventSeq, &s.Outbox); err != nil {
		t.Fatal(err)
	}
	rows, _ := pool.Query(ctx, `SELECT id, status, hold, failure_reason FROM payments WHERE id > 1`)
	var (
		id int64
		p  paymentState
	)
	if _, err := pgx.ForEachRow(rows, []any{&id, &p.Status, &p.Hold, &p.Reason}, func() error { s.Payments[id] = p; return nil }); err != nil {
		t.Fatal(err)
	}
	rows, _ = pool.Query(ctx, `SELECT payment_id, amount FROM entries WHERE payment_id > 1`)
	var amount int64
	if _, err := pgx.ForEachRow(rows, []any{&id, &amount}, func() error { s.Entries[id] = amount; return nil }); err != nil {
		t.Fatal(err)
	}
	rows, _ = pool.Query(ctx, `SELECT payment_id, from_status, to_status, actor, reason, user_seq FROM payment_transitions WHERE actor = 'reconciler' ORDER BY id`)
	var tr transition
	if _, err := pgx.ForEachRow(rows, []any{&id, &tr.From, &tr.To, &tr.Actor, &tr.Reason, &tr.UserSeq}, func() error {
		s.Transitions[id] = append(s.Transitions[id], tr)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return s
}

func ledgerOK(t *testing.T, pool *pgxpool.Pool, stmt verify.Statement) {
	t.Helper()
	rep, err := verify.New(pool, stmt, verify.DefaultConfig()).Check(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		var b strings.Builder
		_ = rep.WriteText(&b)
		t.Errorf("ledger invariants after reconciling:\n%s", b.String())
	}
}

func emitToOutbox(ctx context.Context, tx pgx.Tx, ev ledger.Event) error {
	return outbox.Insert(ctx, tx, "payments.events", []byte(fmt.Sprint(ev.UserID)), []byte(ev.ID()))
}

func text(r reconcile.Report) string {
	var b strings.Builder
	_ = r.WriteText(&b)
	return b.String()
}

func TestLookupResolves(t *testing.T) {
	t.Parallel()
	old, recent := 10*time.Minute, 10*time.Second
	pool := seed(t, []unknownPayment{
		{101, -3000, old, old},      // executed → succeeded
		{102, -500, old, old},       // declined → failed
		{103, -200, old, old},       // 404 after the safety bound → failed
		{104, -100, recent, recent}, // 404 within the safety bound → stays unknown
		{105, -50, old, old},        // executed for another amount → stays unknown
	})
	proc := &fakeProcessor{resources: map[string]reconcile.Resource{
		"payment-101": {ID: "pay_1", UserID: user, Amount: -3000, Status: "succeeded"},
		"payment-102": {ID: "pay_2", UserID: user, Amount: -500, Status: "declined", Reason: "card blocked"},
		"payment-105": {ID: "pay_5", UserID: user, Amount: -51, Status: "succeeded"},
	}}
	cfg := reconcile.DefaultConfig()
	cfg.Emit = emitToOutbox
	rc := reconcile.New(pool, nil, &reconcile.HTTPLookup{BaseURL: proc.serve(t)}, cfg)

	rep, err := rc.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Unknown != 5 || rep.Succeeded != 1 || rep.Failed != 2 || rep.Left != 2 || rep.Errors != 0 {
		t.Errorf("report counts:\n%s", text(rep))
	}
	got := readState(t, pool)
	want := state{
		Balance: 7000, Held: 150, EventSeq: 13, Outbox: 3,
		Payments: map[int64]paymentState{
			101: {"succeeded", 0, ""},
			102: {"failed", 0, "reconciled: declined by processor: card blocked"},
			103: {"failed", 0, "reconciled: not executed by processor (lookup by key: not found)"},
			104: {"unknown", 100, "processor timeout"},
			105: {"unknown", 50, "processor timeout"},
		},
		Entries: map[int64]int64{101: -3000},
		Transitions: map[int64][]transition{
			101: {{"unknown", "succeeded", "reconciler", "reconciled: the processor reports payment-101 succeeded as pay_1", 11}},
			102: {{"unknown", "failed", "reconciler", "reconciled: declined by processor: card blocked", 12}},
			103: {{"unknown", "failed", "reconciler", "reconciled: not executed by processor (lookup by key: not found)", 13}},
		},
	}
	if diff := diffState(want, got); diff != "" {
		t.Errorf("state after reconciling: %s\n%s", diff, text(rep))
	}
	ledgerOK(t, pool, nil)

	// A second pass resolves nothing more and changes nothing.
	rep2, err := rc.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep2.Unknown != 2 || rep2.Succeeded != 0 || rep2.Failed != 0 || rep2.Left != 2 {
		t.Errorf("second pass:\n%s", text(rep2))
	}
	if diff := diffState(want, readState(t, pool)); diff != "" {
		t.Errorf("state after a second pass: %s", diff)
	}
}

func diffState(want, got state) string {
	w, _ := json.MarshalIndent(want, "", " ")
	g, _ := json.MarshalIndent(got, "", " ")
	if string(w) == string(g) {
		return ""
	}
	return fmt.Sprintf("\nwant %s\ngot  %s", w, g)
}

func TestDryRunChangesNothing(t *testing.T) {
	t.Parallel()
	old := 10 * time.Minute
	pool := seed(t, []unknownPayment{{101, -3000, old, old}, {103, -200, old, old}})
	proc := &fakeProcessor{resources: map[string]reconcile.Resource{
		"payment-101": {ID: "pay_1", UserID: user, Amount: -3000, Status: "succeeded"},
	}}
	before := readState(t, pool)
	cfg := reconcile.DefaultConfig()
	cfg.DryRun = true
	rep, err := reconcile.New(pool, nil, &reconcile.HTTPLookup{BaseURL: proc.serve(t)}, cfg).Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Succeeded != 1 || rep.Failed != 1 || len(rep.Resolved) != 2 || rep.Resolved[0].Applied || !strings.Contains(text(rep), "would resolve") {
		t.Errorf("dry run report:\n%s", text(rep))
	}
	if diff := diffState(before, readState(t, pool)); diff != "" {
		t.Errorf("a dry run changed the database: %s", diff)
	}
}

func TestStatementResolvesAsIs(t *testing.T) {
	t.Parallel()
	old, recent := 10*time.Minute, 10*time.Second
	pool := seed(t, []unknownPayment{
		{201, -3000, old + time.Second, old}, // one execution in its window → succeeded
		{202, -500, old, old},                // none → failed
		{203, -700, old, old},                // 203 and 204 share one execution → ambiguous
		{204, -700, old, old},
		{205, -900, old, old},                     // two executions → ambiguous
		{206, -800, old, old},                     // one execution, also in failed 207's window → ambiguous
		{208, -400, recent, recent},               // window not closed when the statement was read
		{209, -600, 3 * time.Hour, 3 * time.Hour}, // one execution, but long before: outside its window → failed
	}, `INSERT INTO payments (id, user_id, merchant_id, amount, status, idempotency_key, request_hash, failure_reason, created_at, updated_at)
	    VALUES (207, 10, 2, -800, 'failed', 'k-207', 'h', 'declined', now() - interval '10 minutes', now() - interval '10 minutes')`)
	at := func(ago time.Duration) time.Time { return time.Now().Add(-ago) }
	stmt := verify.SliceStatement{
		{Seq: 1, ID: "pay_1", UserID: user, Amount: -3000, API: "as-is", ExecutedAt: at(old)},
		{Seq: 2, ID: "pay_2", UserID: user, Amount: -700, API: "as-is", ExecutedAt: at(old)},
		{Seq: 3, ID: "pay_3", UserID: user, Amount: -900, API: "as-is", ExecutedAt: at(old)},
		{Seq: 4, ID: "pay_4", UserID: user, Amount: -900, API: "as-is", ExecutedAt: at(old)},
		{Seq: 5, ID: "pay_5", UserID: user, Amount: -800, API: "as-is", ExecutedAt: at(old)},
		{Seq: 6, ID: "pay_6", UserID: user, Amount: -600, API: "as-is", ExecutedAt: at(5 * time.Hour)},
		{Seq: 7, ID: "pay_7", UserID: user, Amount: -400, API: "as-is", ExecutedAt: at(recent)},
	}
	rc := reconcile.New(pool, stmt, nil, reconcile.DefaultConfig())
	rep, err := rc.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	got := readState(t, pool)
	wantStatus := map[int64]string{201: "succeeded", 202: "failed", 203: "unknown", 204: "unknown", 205: "unknown",
		206: "unknown", 207: "failed", 208: "unknown", 209: "failed"}
	for id, s := range wantStatus {
		if got.Payments[id].Status != s {
			t.Errorf("payment %d is %s, want %s", id, got.Payments[id].Status, s)
		}
	}
	if rep.Succeeded != 1 || rep.Failed != 2 || rep.Left != 5 {
		t.Errorf("report:\n%s", text(rep))
	}
	if got.Balance != 7000 || got.Held != 700+700+900+800+400 || len(got.Transitions) != 3 {
		t.Errorf("balance %d held %d, %d payments audited by the reconciler; want 7000, 3500, 3", got.Balance, got.Held, len(got.Transitions))
	}
	if tr := got.Transitions[201]; len(tr) != 1 || !strings.Contains(tr[0].Reason, "matched execution pay_1") {
		t.Errorf("audit of 201: %+v", tr)
	}
	// The two executions for 205 outnumber its one open payment; pay_6 was
	// executed with no payment of its own.
	mm := map[verify.Kind]int64{}
	for _, f := range rep.Mismatches {
		if f.Count > 0 {
			mm[f.Kind] = f.Count
		}
	}
	if len(mm) != 1 || mm[verify.UnmatchedExecutions] != 2 {
		t.Errorf("mismatches = %v, want unmatched_executions 2\n%s", mm, text(rep))
	}

	// Idempotent: a second pass resolves nothing more.
	rep2, err := rc.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep2.Succeeded != 0 || rep2.Failed != 0 || rep2.Left != 5 {
		t.Errorf("second pass:\n%s", text(rep2))
	}
	if diff := diffState(got, readState(t, pool)); diff != "" {
		t.Errorf("second pass changed the database: %s", diff)
	}
}

func TestKeyedStatement(t *testing.T) {
	t.Parallel()
	old := 10 * time.Minute
	pool := seed(t, []unknownPayment{{301, -3000, old, old}, {302, -500, old, old}, {303, -200, old, old}, {304, -100, old, old}})
	at := time.Now().Add(-old)
	stmt := verify.SliceStatement{
		{Seq: 1, ID: "pay_1", IdempotencyKey: "payment-301", UserID: user, Amount: -3000, API: "proposed", ExecutedAt: at},
		{Seq: 2, ID: "pay_2", IdempotencyKey: "payment-302", UserID: user, Amount: -500, API: "proposed", ExecutedAt: at},
		{Seq: 3, ID: "pay_3", IdempotencyKey: "payment-302", UserID: user, Amount: -500, API: "proposed", ExecutedAt: at},
		{Seq: 4, ID: "pay_4", IdempotencyKey: "payment-303", UserID: user, Amount: -201, API: "proposed", ExecutedAt: at},
	}
	// The lookup is never needed: the statement shows each key's executions.
	proc := &fakeProcessor{}
	rep, err := reconcile.New(pool, stmt, &reconcile.HTTPLookup{BaseURL: proc.serve(t)}, reconcile.DefaultConfig()).Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	got := readState(t, pool)
	for id, s := range map[int64]string{301: "succeeded", 302: "succeeded", 303: "unknown", 304: "failed"} {
		if got.Payments[id].Status != s {
			t.Errorf("payment %d is %s, want %s\n%s", id, got.Payments[id].Status, s, text(rep))
		}
	}
	if n := proc.lookups.Load(); n != 1 { // only 304, which the statement does not show
		t.Errorf("%d lookups, want 1", n)
	}
	mm := map[verify.Kind]int64{}
	for _, f := range rep.Mismatches {
		if f.Count > 0 {
			mm[f.Kind] = f.Count
		}
	}
	// 303 was executed (for another amount) and is still unknown here.
	if len(mm) != 3 || mm[verify.PaidTwice] != 1 || mm[verify.AmountMismatch] != 1 || mm[verify.ExecutedNotSucceeded] != 1 {
		t.Errorf("mismatches = %v, want paid_twice 1, amount_mismatch 1, executed_not_succeeded 1\n%s", mm, text(rep))
	}
	if got.Balance != 10000-3000-500 || got.Held != 200 {
		t.Errorf("balance %d held %d, want 6500 200", got.Balance, got.Held)
	}
}

func TestLookupErrorsLeaveUnknown(t *testing.T) {
	t.Parallel()
	old := 10 * time.Minute
	pool := seed(t, []unknownPayment{{401, -300, old, old}})
	// A processor without the lookup route (as-is API): a bare 404.
	srv := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(srv.Close)
	rep, err := reconcile.New(pool, nil, &reconcile.HTTPLookup{BaseURL: srv.URL}, reconcile.DefaultConfig()).Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Left != 1 || rep.Errors != 1 || rep.Failed != 0 {
		t.Errorf("report:\n%s", text(rep))
	}
	if s := readState(t, pool).Payments[401].Status; s != "unknown" {
		t.Errorf("payment 401 is %s after a failed lookup", s)
	}
}

func TestWatch(t *testing.T) {
	t.Parallel()
	old := 10 * time.Minute
	pool := seed(t, []unknownPayment{{501, -300, old, old}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var passes []reconcile.Report
	err := reconcile.New(pool, verify.SliceStatement{}, nil, reconcile.DefaultConfig()).Watch(ctx, time.Millisecond, func(r reconcile.Report, err error) {
		if err != nil {
			t.Errorf("pass: %v", err)
		}
		passes = append(passes, r)
		if len(passes) == 2 {
			cancel()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(passes) != 2 || passes[0].Failed != 1 || passes[1].Unknown != 0 {
		t.Errorf("passes: %+v", passes)
	}
}

func TestNoLookupRouteFallsBackToStatement(t *testing.T) {
	t.Parallel()
	old := 10 * time.Minute
	pool := seed(t, []unknownPayment{{601, -300, old + time.Second, old}, {602, -400, old, old}})
	srv := httptest.NewServer(http.NotFoundHandler()) // as-is: no /v2 routes
	t.Cleanup(srv.Close)
	stmt := verify.SliceStatement{{Seq: 1, ID: "pay_1", UserID: user, Amount: -300, API: "as-is", ExecutedAt: time.Now().Add(-old)}}
	rep, err := reconcile.New(pool, stmt, &reconcile.HTTPLookup{BaseURL: srv.URL}, reconcile.DefaultConfig()).Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	got := readState(t, pool)
	if got.Payments[601].Status != "succeeded" || got.Payments[602].Status != "failed" || rep.Errors != 0 {
		t.Errorf("payments %+v\n%s", got.Payments, text(rep))
	}
}
