package reconcile_test

import (
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/finsvc/finance/pkg/ledger"
	"github.com/finsvc/finance/pkg/outbox"
	"github.com/finsvc/finance/pkg/payment"
	"github.com/finsvc/finance/pkg/pgtest"
	"github.com/finsvc/finance/pkg/reconcile"
	"github.com/finsvc/finance/pkg/verify"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

const user = 10

// unknownPayment is a debit of user 10 left unknown by the dispatcher, or,
// with a status, accepted or processing.
type unknownPayment struct {
	id, amount int64
	age        time.Duration // since accepted
	unknownFor time.Duration // since it became unknown (or its status)
	status     string        // "" is unknown
}

// uidOf is the uid the seeded payment id gets, so tests can name its key.
func uidOf(id int64) uuid.UUID {
	return uuid.MustParse(fmt.Sprintf("00000000-0000-7000-8000-%012d", id))
}

// keyOf is the processor key of seeded payment id: payment-<its uid>.
func keyOf(id int64) string { return payment.ProcessorKey(uidOf(id)) }

// seed writes user 10 with a settled balance of 10000 (a seed payment and
// its entry) and the payments, each holding its amount, with their audit
// rows (accepted, then unknown or processing). Every payment's uid is
// uidOf(id).
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
		INSERT INTO wallets (user_id, balance, held) VALUES (%d, 10000, %d);
		INSERT INTO payments (id, user_id, merchant_id, amount, status, idempotency_key, request_hash, source)
		VALUES (1, %[1]d, 1, 10000, 'succeeded', 'seed', 'h', 'seed');
		INSERT INTO entries (user_id, payment_id, merchant_id, amount, occurred_at) VALUES (%[1]d, 1, 1, 10000, now());
		`, user, held)
	seq := 0
	for _, p := range ps {
		status, reason := p.status, ""
		if status == "" {
			status, reason = "unknown", "processor timeout"
		}
		seq++
		fmt.Fprintf(&b, `
		INSERT INTO payments (id, uid, user_id, merchant_id, amount, status, idempotency_key, request_hash, hold, failure_reason, created_at, updated_at)
		VALUES (%[1]d, '%[9]s', %[2]d, 2, %[3]d, '%[7]s', 'k-%[1]d', 'h', %[4]d, '%[8]s', now() - %[5]d * interval '1 microsecond', now() - %[6]d * interval '1 microsecond');
		INSERT INTO payment_transitions (payment_id, user_id, user_seq, from_status, to_status, actor, reason) VALUES
			(%[1]d, %[2]d, %[10]d, '', 'accepted', 'gateway', '');
		`, p.id, user, p.amount, -p.amount, p.age.Microseconds(), p.unknownFor.Microseconds(), status, reason, uidOf(p.id), seq)
		if status != "accepted" {
			seq++
			fmt.Fprintf(&b, `
		INSERT INTO payment_transitions (payment_id, user_id, user_seq, from_status, to_status, actor, reason) VALUES
			(%d, %d, %d, 'accepted', '%s', 'status-consumer', '%s');
		`, p.id, user, seq, status, reason)
		}
	}
	fmt.Fprintf(&b, `UPDATE wallets SET event_seq = %d WHERE user_id = %d;`, seq, user)
	for _, s := range append([]string{b.String()}, extraSQL...) {
		if _, err := pool.Exec(context.Background(), s); err != nil {
			t.Fatalf("seed: %v\n%s", err, s)
		}
	}
	return pool
}

// asReconciler returns a pool on pool's database that logs in as
// finance_reconciler (migration 00015), the role the reconciler runs as
// under make run and the chart, so that every pass of these tests is also a
// check of its grants. pool (the owner's) seeds and reads.
func asReconciler(t *testing.T, pool *pgxpool.Pool) *pgxpool.Pool {
	t.Helper()
	cfg := pool.Config()
	cfg.ConnConfig.User, cfg.ConnConfig.Password = "finance_reconciler", ""
	rp, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rp.Close)
	return rp
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

// ledgerOK fails t unless the money is right. Liveness (stuck_nonfinal,
// stuck_in_flight, unknown_too_long) is not checked: these tests leave old
// payments open on purpose.
func ledgerOK(t *testing.T, pool *pgxpool.Pool, stmt verify.Statement) {
	t.Helper()
	cfg := verify.DefaultConfig()
	cfg.StuckAfter, cfg.InFlightBound, cfg.UnknownBound = 0, 24*time.Hour, 24*time.Hour
	rep, err := verify.New(pool, stmt, cfg).Check(context.Background())
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
		{101, -3000, old, old, ""},      // executed → succeeded
		{102, -500, old, old, ""},       // declined → failed
		{103, -200, old, old, ""},       // 404 after the safety bound → failed
		{104, -100, recent, recent, ""}, // 404 within the safety bound → stays unknown
		{105, -50, old, old, ""},        // executed for another amount → stays unknown
	})
	proc := &fakeProcessor{resources: map[string]reconcile.Resource{
		keyOf(101): {ID: "pay_1", UserID: user, Amount: -3000, Status: "succeeded"},
		keyOf(102): {ID: "pay_2", UserID: user, Amount: -500, Status: "declined", Reason: "card blocked"},
		keyOf(105): {ID: "pay_5", UserID: user, Amount: -51, Status: "succeeded"},
	}}
	cfg := reconcile.DefaultConfig()
	cfg.Emit = emitToOutbox
	rc := reconcile.New(asReconciler(t, pool), nil, &reconcile.HTTPLookup{BaseURL: proc.serve(t)}, cfg)

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
			101: {{"unknown", "succeeded", "reconciler", "reconciled: the processor reports " + keyOf(101) + " succeeded as pay_1", 11}},
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
	pool := seed(t, []unknownPayment{{101, -3000, old, old, ""}, {103, -200, old, old, ""}})
	proc := &fakeProcessor{resources: map[string]reconcile.Resource{
		keyOf(101): {ID: "pay_1", UserID: user, Amount: -3000, Status: "succeeded"},
	}}
	before := readState(t, pool)
	cfg := reconcile.DefaultConfig()
	cfg.DryRun = true
	rep, err := reconcile.New(asReconciler(t, pool), nil, &reconcile.HTTPLookup{BaseURL: proc.serve(t)}, cfg).Run(context.Background())
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
		{201, -3000, old + time.Second, old, ""}, // one execution in its window → succeeded
		{202, -500, old, old, ""},                // none → failed
		{203, -700, old, old, ""},                // 203 and 204 share one execution → ambiguous
		{204, -700, old, old, ""},
		{205, -900, old, old, ""},                     // two executions → ambiguous
		{206, -800, old, old, ""},                     // one execution, also in failed 207's window → ambiguous
		{208, -400, recent, recent, ""},               // window not closed when the statement was read
		{209, -600, 3 * time.Hour, 3 * time.Hour, ""}, // one execution, but long before: outside its window → failed
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
	rc := reconcile.New(asReconciler(t, pool), stmt, nil, reconcile.DefaultConfig())
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
	pool := seed(t, []unknownPayment{{301, -3000, old, old, ""}, {302, -500, old, old, ""}, {303, -200, old, old, ""}, {304, -100, old, old, ""}})
	at := time.Now().Add(-old)
	stmt := verify.SliceStatement{
		{Seq: 1, ID: "pay_1", IdempotencyKey: keyOf(301), UserID: user, Amount: -3000, API: "proposed", ExecutedAt: at},
		{Seq: 2, ID: "pay_2", IdempotencyKey: keyOf(302), UserID: user, Amount: -500, API: "proposed", ExecutedAt: at},
		{Seq: 3, ID: "pay_3", IdempotencyKey: keyOf(302), UserID: user, Amount: -500, API: "proposed", ExecutedAt: at},
		{Seq: 4, ID: "pay_4", IdempotencyKey: keyOf(303), UserID: user, Amount: -201, API: "proposed", ExecutedAt: at},
	}
	// The lookup is never needed: the statement shows each key's executions.
	proc := &fakeProcessor{}
	rep, err := reconcile.New(asReconciler(t, pool), stmt, &reconcile.HTTPLookup{BaseURL: proc.serve(t)}, reconcile.DefaultConfig()).Run(context.Background())
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
	pool := seed(t, []unknownPayment{{401, -300, old, old, ""}})
	// A processor without the lookup route (as-is API): a bare 404.
	srv := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(srv.Close)
	rep, err := reconcile.New(asReconciler(t, pool), nil, &reconcile.HTTPLookup{BaseURL: srv.URL}, reconcile.DefaultConfig()).Run(context.Background())
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
	pool := seed(t, []unknownPayment{{501, -300, old, old, ""}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var passes []reconcile.Report
	err := reconcile.New(asReconciler(t, pool), verify.SliceStatement{}, nil, reconcile.DefaultConfig()).Watch(ctx, time.Millisecond, func(r reconcile.Report, err error) {
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
	pool := seed(t, []unknownPayment{{601, -300, old + time.Second, old, ""}, {602, -400, old, old, ""}})
	srv := httptest.NewServer(http.NotFoundHandler()) // as-is: no /v2 routes
	t.Cleanup(srv.Close)
	stmt := verify.SliceStatement{{Seq: 1, ID: "pay_1", UserID: user, Amount: -300, API: "as-is", ExecutedAt: time.Now().Add(-old)}}
	rep, err := reconcile.New(asReconciler(t, pool), stmt, &reconcile.HTTPLookup{BaseURL: srv.URL}, reconcile.DefaultConfig()).Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	got := readState(t, pool)
	if got.Payments[601].Status != "succeeded" || got.Payments[602].Status != "failed" || rep.Errors != 0 {
		t.Errorf("payments %+v\n%s", got.Payments, text(rep))
	}
}

func TestStuckPaymentsRepaired(t *testing.T) {
	t.Parallel()
	old, young := 10*time.Minute, 30*time.Second
	pool := seed(t, []unknownPayment{
		{701, -3000, old, old, "accepted"},   // the statement shows it executed → succeeded
		{702, -500, old, old, "processing"},  // the lookup says succeeded → succeeded
		{703, -200, old, old, "accepted"},    // the lookup says declined → failed
		{704, -100, old, old, "processing"},  // 404: may still be queued → left
		{705, -50, young, young, "accepted"}, // within the bound: not examined
		{706, -70, old, old, "processing"},   // executed for another amount → left
	})
	at := time.Now().Add(-old)
	stmt := verify.SliceStatement{
		{Seq: 1, ID: "pay_1", IdempotencyKey: keyOf(701), UserID: user, Amount: -3000, API: "proposed", ExecutedAt: at},
	}
	proc := &fakeProcessor{resources: map[string]reconcile.Resource{
		keyOf(702): {ID: "pay_2", UserID: user, Amount: -500, Status: "succeeded"},
		keyOf(703): {ID: "pay_3", UserID: user, Amount: -200, Status: "declined", Reason: "card blocked"},
		keyOf(706): {ID: "pay_6", UserID: user, Amount: -71, Status: "succeeded"},
		keyOf(705): {ID: "pay_5", UserID: user, Amount: -50, Status: "succeeded"}, // never asked
	}}
	cfg := reconcile.DefaultConfig()
	cfg.Emit = emitToOutbox
	rc := reconcile.New(asReconciler(t, pool), stmt, &reconcile.HTTPLookup{BaseURL: proc.serve(t)}, cfg)
	rep, err := rc.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Unknown != 0 || rep.Stuck != 5 || rep.Succeeded != 2 || rep.Failed != 1 || rep.Left != 2 || rep.Errors != 0 {
		t.Errorf("report counts:\n%s", text(rep))
	}
	if n := proc.lookups.Load(); n != 4 { // 702, 703, 704, 706; 701 is in the statement
		t.Errorf("%d lookups, want 4", n)
	}
	got := readState(t, pool)
	// 703's reason is checked by its start, below.
	if diff := cmp.Diff(map[int64]paymentState{
		701: {"succeeded", 0, ""},
		702: {"succeeded", 0, ""},
		704: {"processing", 100, ""},
		705: {"accepted", 50, ""},
		706: {"processing", 70, ""},
	}, got.Payments, cmpopts.IgnoreMapEntries(func(id int64, _ paymentState) bool { return id == 703 })); diff != "" {
		t.Errorf("payments (-want +got):\n%s", diff)
	}
	if p := got.Payments[703]; p.Status != "failed" || p.Hold != 0 || !strings.HasPrefix(p.Reason, "reconciled: declined by processor: card blocked (accepted for 10m") {
		t.Errorf("payment 703 = %+v", p)
	}
	if got.Balance != 10000-3000-500 || got.Held != 100+50+70 || got.Outbox != 3 ||
		len(got.Entries) != 2 || got.Entries[701] != -3000 || got.Entries[702] != -500 {
		t.Errorf("balance %d held %d outbox %d entries %v", got.Balance, got.Held, got.Outbox, got.Entries)
	}
	// Audited forward from where each payment was, by the reconciler, with the evidence.
	wantFrom := map[int64]string{701: "accepted", 702: "processing", 703: "accepted"}
	for id, from := range wantFrom {
		tr := got.Transitions[id]
		if len(tr) != 1 || tr[0].From != from || tr[0].Actor != "reconciler" || tr[0].UserSeq == 0 {
			t.Errorf("audit of %d: %+v, want one transition from %s", id, tr, from)
		}
	}
	if tr := got.Transitions[701]; len(tr) == 1 && !strings.Contains(tr[0].Reason, "statement shows "+keyOf(701)+" executed as pay_1 (accepted for 10m") {
		t.Errorf("audit reason of 701: %q", tr[0].Reason)
	}
	out := text(rep)
	for _, want := range []string{
		"accepted or processing for over 2m0s: 5",
		"payment 704 (user 10, amount -100): left processing: processing for 10m",
		"not found by the processor under " + keyOf(704) + ": its request may still be queued (Kafka), left to the pipeline",
		"payment 706 (user 10, amount -70): left processing: the processor executed " + keyOf(706) + " as pay_6 for user 10 amount -71: needs an operator",
		"payment 701 (user 10, amount -3000): resolved accepted → succeeded",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	ledgerOK(t, pool, nil)

	// A second pass asks about the two left and changes nothing.
	rep2, err := rc.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep2.Stuck != 2 || rep2.Succeeded != 0 || rep2.Failed != 0 || rep2.Left != 2 {
		t.Errorf("second pass:\n%s", text(rep2))
	}
	if diff := diffState(got, readState(t, pool)); diff != "" {
		t.Errorf("second pass changed the database: %s", diff)
	}
}

func TestStuckBoundAndLookupBudget(t *testing.T) {
	t.Parallel()
	old := 10 * time.Minute
	ps := []unknownPayment{{801, -100, old, old, "accepted"}, {802, -200, old, old, "processing"}, {803, -300, old, old, "accepted"}}
	resources := map[string]reconcile.Resource{
		keyOf(801): {ID: "pay_1", UserID: user, Amount: -100, Status: "succeeded"},
		keyOf(802): {ID: "pay_2", UserID: user, Amount: -200, Status: "succeeded"},
		keyOf(803): {ID: "pay_3", UserID: user, Amount: -300, Status: "succeeded"},
	}
	tests := []struct {
		name                     string
		stuckAfter               time.Duration
		budget                   int
		dryRun                   bool
		wantStuck, wantSucceeded int64
		wantLookups              int64
		wantStatus               map[int64]string
	}{
		{"off", 0, 1000, false, 0, 0, 0, map[int64]string{801: "accepted", 802: "processing", 803: "accepted"}},
		{"bound not reached", 11 * time.Minute, 1000, false, 0, 0, 0, map[int64]string{801: "accepted", 802: "processing", 803: "accepted"}},
		{"two lookups a pass", 2 * time.Minute, 2, false, 3, 2, 2, map[int64]string{801: "succeeded", 802: "succeeded", 803: "accepted"}},
		{"statement only", 2 * time.Minute, 0, false, 3, 0, 0, map[int64]string{801: "accepted", 802: "processing", 803: "accepted"}},
		{"dry run", 2 * time.Minute, 1000, true, 3, 3, 3, map[int64]string{801: "accepted", 802: "processing", 803: "accepted"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pool := seed(t, ps)
			proc := &fakeProcessor{resources: resources}
			cfg := reconcile.DefaultConfig()
			cfg.StuckAfter, cfg.StuckLookups, cfg.DryRun = tt.stuckAfter, tt.budget, tt.dryRun
			rep, err := reconcile.New(asReconciler(t, pool), nil, &reconcile.HTTPLookup{BaseURL: proc.serve(t)}, cfg).Run(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if rep.Stuck != tt.wantStuck || rep.Succeeded != tt.wantSucceeded || proc.lookups.Load() != tt.wantLookups {
				t.Errorf("stuck %d succeeded %d lookups %d, want %d %d %d\n%s", rep.Stuck, rep.Succeeded, proc.lookups.Load(),
					tt.wantStuck, tt.wantSucceeded, tt.wantLookups, text(rep))
			}
			got := readState(t, pool)
			for id, s := range tt.wantStatus {
				if got.Payments[id].Status != s {
					t.Errorf("payment %d is %s, want %s", id, got.Payments[id].Status, s)
				}
			}
			if tt.budget == 2 && !strings.Contains(text(rep), "not looked up: this pass's 2 lookups of stuck payments are spent") {
				t.Errorf("report does not say the budget was spent:\n%s", text(rep))
			}
			ledgerOK(t, pool, nil)
		})
	}
}

func TestReportListsExecutionsWithoutPayment(t *testing.T) {
	t.Parallel()
	old := 10 * time.Minute
	pool := seed(t, []unknownPayment{{901, -300, old, old, ""}})
	at := time.Now().Add(-old).UTC().Truncate(time.Microsecond)
	lost := payment.NewUID()
	stmt := verify.SliceStatement{
		{Seq: 1, ID: "pay_1", IdempotencyKey: keyOf(901), UserID: user, Amount: -300, Reference: "901", API: "proposed", ExecutedAt: at},
		// A payment accepted after the backup this database was restored
		// from: its id 901 was handed out again since, to another payment.
		{Seq: 2, ID: "pay_2", IdempotencyKey: payment.ProcessorKey(lost), UserID: user, Amount: -700, Reference: "901", API: "proposed", ExecutedAt: at},
		{Seq: 3, ID: "pay_3", UserID: user, Amount: -300, API: "as-is", ExecutedAt: at},
	}
	rep, err := reconcile.New(asReconciler(t, pool), stmt, nil, reconcile.DefaultConfig()).Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []reconcile.LostExecution{{Key: payment.ProcessorKey(lost), PaymentUID: lost, Ref: "pay_2", UserID: user, Amount: -700, ExecutedAt: at, Reference: "901"}}
	if rep.WithoutPaymentCount != 1 {
		t.Errorf("%d executions without payment, want 1", rep.WithoutPaymentCount)
	}
	if diff := cmp.Diff(want, rep.WithoutPayment); diff != "" {
		t.Errorf("executions without payment (-want +got):\n%s", diff)
	}
	if s := readState(t, pool).Payments[901].Status; s != "succeeded" {
		t.Errorf("payment 901 is %s, want succeeded by its own key", s)
	}
	out := text(rep)
	if !strings.Contains(out, "executions without payment (uid not held here, e.g. lost in a restore): 1") ||
		!strings.Contains(out, payment.ProcessorKey(lost)+"  10    -700") {
		t.Errorf("text report:\n%s", out)
	}
	f, _ := func() (verify.Finding, bool) {
		for _, f := range rep.Mismatches {
			if f.Kind == verify.ExecutionWithoutPayment {
				return f, true
			}
		}
		return verify.Finding{}, false
	}()
	if f.Count != 1 {
		t.Errorf("mismatch execution_without_payment = %d, want 1\n%s", f.Count, out)
	}
}

// TestOnePayment: Config.PaymentID resolves that payment alone; the others
// stay as they were and are not even looked up.
func TestOnePayment(t *testing.T) {
	t.Parallel()
	old := 10 * time.Minute
	pool := seed(t, []unknownPayment{{101, -3000, old, old, ""}, {102, -500, old, old, ""}})
	proc := &fakeProcessor{resources: map[string]reconcile.Resource{
		keyOf(101): {ID: "pay_1", UserID: user, Amount: -3000, Status: "succeeded"},
		keyOf(102): {ID: "pay_2", UserID: user, Amount: -500, Status: "succeeded"},
	}}
	cfg := reconcile.DefaultConfig()
	cfg.PaymentID = 102
	rep, err := reconcile.New(asReconciler(t, pool), nil, &reconcile.HTTPLookup{BaseURL: proc.serve(t)}, cfg).Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Unknown != 1 || rep.Succeeded != 1 || len(rep.Resolved) != 1 || rep.Resolved[0].PaymentID != 102 || proc.lookups.Load() != 1 {
		t.Errorf("one-payment pass (%d lookups):\n%s", proc.lookups.Load(), text(rep))
	}
	got := readState(t, pool).Payments
	if got[101].Status != "unknown" || got[102].Status != "succeeded" {
		t.Errorf("payments after resolving 102 alone: %+v", got)
	}
	ledgerOK(t, pool, nil)
}

// growingStatement is a statement the test extends between passes, which
// records how each pass read it.
type growingStatement struct {
	mu    sync.Mutex
	execs verify.SliceStatement
	whole int
	after []int64
}

func (s *growingStatement) set(execs ...verify.Execution) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.execs = slices.Clone(execs)
}

func (s *growingStatement) Executions(ctx context.Context) iter.Seq2[verify.Execution, error] {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.whole++
	return slices.Clone(s.execs).Executions(ctx)
}

func (s *growingStatement) ExecutionsAfter(ctx context.Context, seq int64) iter.Seq2[verify.Execution, error] {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.after = append(s.after, seq)
	return slices.Clone(s.execs).ExecutionsAfter(ctx, seq)
}

func (s *growingStatement) reads() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fmt.Sprintf("whole %d, after %v", s.whole, s.after)
}

// TestKeptStatementReadsOnlyWhatIsNew: with KeepStatement, the first pass
// loads the whole statement and later passes read only what was executed
// since (from the last execution they hold, read again as a check); an
// execution that appears between passes resolves its payment as a fresh load
// would; a statement that no longer holds what was loaded (a simulator
// started afresh) is loaded whole again, and its findings are the new
// statement's.
func TestKeptStatementReadsOnlyWhatIsNew(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	old := 10 * time.Minute
	// 302 became unknown 10 s ago: the processor may still execute it, so
	// the absence of its execution proves nothing yet.
	pool := seed(t, []unknownPayment{{301, -3000, old, old, ""}, {302, -500, old, 10 * time.Second, ""}})
	at := time.Now().Add(-old)
	e1 := verify.Execution{Seq: 1, ID: "pay_1", IdempotencyKey: keyOf(301), UserID: user, Amount: -3000, API: "proposed", ExecutedAt: at}
	e2 := verify.Execution{Seq: 2, ID: "pay_2", IdempotencyKey: keyOf(302), UserID: user, Amount: -500, API: "proposed", ExecutedAt: at}
	e3 := verify.Execution{Seq: 3, ID: "pay_3", IdempotencyKey: keyOf(302), UserID: user, Amount: -500, API: "proposed", ExecutedAt: at}
	stmt := &growingStatement{}
	stmt.set(e1)
	cfg := reconcile.DefaultConfig()
	cfg.KeepStatement = true
	rc := reconcile.New(asReconciler(t, pool), stmt, nil, cfg) // no lookup: the statement is the only evidence
	defer rc.Close()

	rep, err := rc.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := readState(t, pool)
	if got.Payments[301].Status != "succeeded" || got.Payments[302].Status != "unknown" || rep.Executions != 1 {
		t.Fatalf("after pass 1: 301 %s, 302 %s, %d executions; want succeeded, unknown, 1\n%s",
			got.Payments[301].Status, got.Payments[302].Status, rep.Executions, text(rep))
	}

	// 302's execution appears, then a second one of it.
	stmt.set(e1, e2)
	if rep, err = rc.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if got := readState(t, pool); got.Payments[302].Status != "succeeded" || rep.Executions != 2 {
		t.Fatalf("after pass 2: 302 %s, %d executions; want succeeded, 2\n%s", got.Payments[302].Status, rep.Executions, text(rep))
	}
	stmt.set(e1, e2, e3)
	if rep, err = rc.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if n := count(rep, verify.PaidTwice); n != 1 || rep.Executions != 3 {
		t.Errorf("after pass 3: paid_twice %d, %d executions; want 1, 3\n%s", n, rep.Executions, text(rep))
	}
	// Each pass asks from the last execution it holds (read again as a check).
	if r := stmt.reads(); r != "whole 1, after [0 1]" {
		t.Errorf("statement reads: %s, want whole 1, after [0 1]", r)
	}

	// The processor's statement starts afresh without the duplicate: loaded
	// whole again, and 302 is no longer paid twice.
	fresh := e2
	fresh.Seq, fresh.ID = 1, "pay_new_1"
	stmt.set(fresh)
	if rep, err = rc.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if n := count(rep, verify.PaidTwice); n != 0 || rep.Executions != 1 {
		t.Errorf("after the statement changed: paid_twice %d, %d executions; want 0, 1\n%s", n, rep.Executions, text(rep))
	}
	if r := stmt.reads(); r != "whole 2, after [0 1 2]" {
		t.Errorf("statement reads: %s, want whole 2, after [0 1 2]", r)
	}
}

// count is the count of kind in rep's mismatches.
func count(rep reconcile.Report, kind verify.Kind) int64 {
	for _, f := range rep.Mismatches {
		if f.Kind == kind {
			return f.Count
		}
	}
	return 0
}

// TestSucceededNotExecutedIsIncremental: with a kept statement, the first
// pass compares every succeeded payment and, once clean, later passes only
// the groups of payments that succeeded in a transition after what the
// clean passes covered (succeeded.go). A payment found succeeded and not
// executed is found again every pass until its execution appears; a
// statement loaded whole again is compared whole again.
func TestSucceededNotExecutedIsIncremental(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := seed(t, nil)
	succeed := func(id, amount int64, transitionID string) {
		t.Helper()
		idCol, idVal := "", ""
		if transitionID != "" {
			idCol, idVal = "id, ", transitionID+", "
		}
		if _, err := pool.Exec(ctx, fmt.Sprintf(`
			INSERT INTO payments (id, uid, user_id, merchant_id, amount, status, idempotency_key, request_hash, created_at, updated_at)
			VALUES (%[1]d, '%[2]s', %[3]d, 2, %[4]d, 'succeeded', 'k-%[1]d', 'h', now() - interval '10 minutes', now() - interval '1 minute');
			INSERT INTO payment_transitions (%[5]s payment_id, user_id, user_seq, from_status, to_status, actor, reason)
			OVERRIDING SYSTEM VALUE VALUES (%[6]s %[1]d, %[3]d, %[1]d, 'processing', 'succeeded', 'status-consumer', '')`,
			id, uidOf(id), user, amount, idCol, idVal)); err != nil {
			t.Fatal(err)
		}
	}
	exec := func(seq, id, amount int64) verify.Execution {
		return verify.Execution{Seq: seq, ID: fmt.Sprintf("pay_%d", seq), IdempotencyKey: keyOf(id), UserID: user, Amount: amount,
			API: "proposed", ExecutedAt: time.Now().Add(-5 * time.Minute)}
	}
	succeed(401, -100, "")
	stmt := &growingStatement{}
	stmt.set(exec(1, 401, -100))
	cfg := reconcile.DefaultConfig()
	cfg.KeepStatement, cfg.CommitBound = true, 0 // a pass's own mark settles at its end
	rc := reconcile.New(asReconciler(t, pool), stmt, nil, cfg)
	defer rc.Close()
	pass := func(want int64) reconcile.Report {
		t.Helper()
		rep, err := rc.Run(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n := count(rep, verify.SucceededNotExecuted); n != want {
			t.Fatalf("succeeded_not_executed %d, want %d\n%s", n, want, text(rep))
		}
		return rep
	}

	if rep := pass(0); rep.SucceededAfter != 0 {
		t.Fatalf("first pass compared from transition %d, want every payment (0)", rep.SucceededAfter)
	}
	watermark := pass(0).SucceededAfter
	if watermark == 0 {
		t.Fatal("second pass compared every payment again: want only what succeeded after the first")
	}
	// 402 succeeds without an execution: found, and again on the next pass,
	// the watermark held where it was.
	succeed(402, -200, "")
	if rep := pass(1); rep.SucceededAfter != watermark {
		t.Errorf("compared from %d, want %d", rep.SucceededAfter, watermark)
	}
	if rep := pass(1); rep.SucceededAfter != watermark {
		t.Errorf("after a violation the watermark moved: %d, want %d", rep.SucceededAfter, watermark)
	}
	stmt.set(exec(1, 401, -100), exec(2, 402, -200))
	pass(0)
	if rep := pass(0); rep.SucceededAfter <= watermark {
		t.Errorf("after 402's execution appeared the watermark stayed at %d", rep.SucceededAfter)
	}
	// 403 succeeded without an execution in a transition numbered below the
	// watermark (as if compared long ago): the passes do not read it again;
	// financectl verify, which compares everything, does.
	succeed(403, -300, "-403")
	pass(0)
	full, err := verify.New(pool, stmt, verify.DefaultConfig()).Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n := full.Count(verify.SucceededNotExecuted); n != 1 {
		t.Errorf("financectl verify's succeeded_not_executed %d, want 1 (payment 403)", n)
	}
	// The processor's statement starts afresh: loaded whole, compared whole.
	stmt.set(verify.Execution{Seq: 1, ID: "pay_new_1", IdempotencyKey: keyOf(401), UserID: user, Amount: -100, API: "proposed",
		ExecutedAt: time.Now().Add(-5 * time.Minute)})
	if rep := pass(2); rep.SucceededAfter != 0 {
		t.Errorf("a statement loaded whole again was compared from %d, want 0", rep.SucceededAfter)
	}

	// An empty statement is loaded whole every pass (nothing numbered to go
	// on from) but loses nothing: the passes still become incremental.
	// A payment processing for 10 s (not stuck: left alone) gives the
	// transitions to mark.
	recent := 10 * time.Second
	other := seed(t, []unknownPayment{{501, -50, recent, recent, "processing"}})
	empty := reconcile.New(asReconciler(t, other), &growingStatement{}, nil, cfg)
	defer empty.Close()
	for i, want := range []bool{false, true} {
		rep, err := empty.Run(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got := rep.SucceededAfter != 0; got != want || !rep.Statement {
			t.Errorf("empty statement, pass %d: compared from transition %d (statement %v); want incremental %v",
				i+1, rep.SucceededAfter, rep.Statement, want)
		}
	}
}
