package verify_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/finsvc/finance/pkg/payment"
	"github.com/finsvc/finance/pkg/pgtest"
	"github.com/finsvc/finance/pkg/verify"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// fixture is a consistent ledger:
//
//   - user 10 (proposed API): seed +10000; 1002 −3000 succeeded (executed
//     with key payment-<uid of 1002>); 1003 −500 processing, holding 500; 1004 −200
//     failed (declined, not executed). Balance 7000, held 500.
//   - user 20 (as-is API): seed +10000; 2002 −1000 succeeded (executed
//     without a key). Balance 9000.
const fixture = `
INSERT INTO merchants (id, name) VALUES (1, 'Pleo'), (2, 'Apple');
INSERT INTO wallets (user_id, balance, held) VALUES (10, 7000, 500), (20, 9000, 0);
INSERT INTO payments (id, user_id, merchant_id, amount, status, idempotency_key, request_hash, hold, source, failure_reason) VALUES
	(1001, 10, 1, 10000, 'succeeded', 'seed-10', 'h', 0, 'seed', ''),
	(1002, 10, 2, -3000, 'succeeded', 'k-1002', 'h', 0, 'api', ''),
	(1003, 10, 2, -500, 'processing', 'k-1003', 'h', 500, 'api', ''),
	(1004, 10, 2, -200, 'failed', 'k-1004', 'h', 0, 'api', 'declined'),
	(2001, 20, 1, 10000, 'succeeded', 'seed-20', 'h', 0, 'seed', ''),
	(2002, 20, 2, -1000, 'succeeded', 'k-2002', 'h', 0, 'api', '');
INSERT INTO entries (user_id, payment_id, merchant_id, amount, occurred_at) VALUES
	(10, 1001, 1, 10000, now()), (10, 1002, 2, -3000, now()),
	(20, 2001, 1, 10000, now()), (20, 2002, 2, -1000, now());
-- The statement is read after the ledger changes it covers.
UPDATE payments SET updated_at = now() - interval '1 second', created_at = now() - interval '2 seconds';
-- Fixed uids, so that the statements below can name them.
UPDATE payments SET uid = ('00000000-0000-7000-8000-' || lpad(id::text, 12, '0'))::uuid;
`

// key is the processor key of fixture payment id: payment-<its uid>.
func key(id int64) string {
	return payment.ProcessorKey(uuid.MustParse(fmt.Sprintf("00000000-0000-7000-8000-%012d", id)))
}

func exec(seq int64, key string, user, amount int64) verify.Execution {
	return verify.Execution{Seq: seq, ID: "pay_" + key, IdempotencyKey: key, UserID: user, Amount: amount,
		API: map[bool]string{true: "as-is", false: "proposed"}[key == ""], ExecutedAt: time.Now().Add(-time.Second)}
}

// cleanStatement matches the fixture.
func cleanStatement() verify.SliceStatement {
	return verify.SliceStatement{exec(1, key(1002), 10, -3000), exec(2, "", 20, -1000)}
}

func newDB(t *testing.T, sql ...string) *pgxpool.Pool {
	t.Helper()
	pool := pgtest.NewPool(t)
	for _, s := range append([]string{fixture}, sql...) {
		if _, err := pool.Exec(context.Background(), s); err != nil {
			t.Fatalf("exec %q: %v", s, err)
		}
	}
	return pool
}

func TestCheck(t *testing.T) {
	t.Parallel()
	plus := func(extra ...verify.Execution) verify.SliceStatement {
		s := cleanStatement()
		for i, e := range extra {
			e.Seq = int64(10 + i)
			s = append(s, e)
		}
		return s
	}
	tests := []struct {
		name       string
		sql        []string
		stmt       verify.SliceStatement // nil: no statement
		stuckAfter *time.Duration        // nil: the default
		from       time.Duration         // > 0: the statement begins this long ago
		want       map[verify.Kind]int64
	}{
		{name: "clean ledger and statement", stmt: cleanStatement(), want: nil},
		{name: "clean ledger without statement", want: nil},
		{name: "an as-is execution of a payment still in flight is not a violation",
			stmt: plus(exec(0, "", 10, -500)), want: nil},
		{name: "in flight past the bound",
			sql:  []string{`UPDATE payments SET created_at = now() - interval '10 minutes' WHERE id = 1003`},
			want: map[verify.Kind]int64{verify.StuckNonfinal: 1, verify.StuckInFlight: 1}},
		{name: "unknown past the bound",
			sql:  []string{`UPDATE payments SET status = 'unknown', created_at = now() - interval '2 hours' WHERE id = 1003`},
			want: map[verify.Kind]int64{verify.StuckNonfinal: 1, verify.UnknownTooLong: 1}},
		{name: "not final past the liveness bound only",
			sql: []string{`UPDATE payments SET created_at = now() - interval '3 minutes' WHERE id = 1003;
			               UPDATE payments SET status = 'unknown', created_at = now() - interval '3 minutes' WHERE id = 1002;
			               DELETE FROM entries WHERE payment_id = 1002; UPDATE wallets SET balance = balance + 3000, held = held + 3000 WHERE user_id = 10;
			               UPDATE payments SET hold = 3000 WHERE id = 1002`},
			want: map[verify.Kind]int64{verify.StuckNonfinal: 2}},
		{name: "the liveness check disabled", stuckAfter: new(time.Duration),
			sql:  []string{`UPDATE payments SET created_at = now() - interval '3 minutes' WHERE id = 1003`},
			want: nil},
		{name: "balance is not the sum of entries",
			sql:  []string{`UPDATE wallets SET balance = balance + 1 WHERE user_id = 20`},
			want: map[verify.Kind]int64{verify.BalanceMismatch: 1}},
		{name: "held is not the sum of open holds",
			sql:  []string{`UPDATE wallets SET held = 0 WHERE user_id = 10`},
			want: map[verify.Kind]int64{verify.HeldMismatch: 1}},
		{name: "an open debit that holds nothing",
			sql:  []string{`UPDATE payments SET hold = 0 WHERE id = 1003; UPDATE wallets SET held = 0 WHERE user_id = 10`},
			want: map[verify.Kind]int64{verify.HoldMismatch: 1}},
		{name: "available below zero",
			sql: []string{
				`ALTER TABLE wallets DROP CONSTRAINT wallets_available_not_negative`,
				`INSERT INTO wallets (user_id, balance, held) VALUES (30, 0, 500);
				 INSERT INTO payments (id, user_id, merchant_id, amount, status, idempotency_key, request_hash, hold)
				 VALUES (3001, 30, 2, -500, 'accepted', 'k-3001', 'h', 500)`},
			want: map[verify.Kind]int64{verify.NegativeAvailable: 1}},
		{name: "an entry whose payment failed, and the processor executed it",
			sql:  []string{`UPDATE payments SET status = 'failed' WHERE id = 1002`},
			stmt: cleanStatement(),
			want: map[verify.Kind]int64{verify.EntryMismatch: 1, verify.ExecutedButFailed: 1}},
		{name: "an entry with another amount than its payment",
			sql:  []string{`UPDATE entries SET amount = -2999 WHERE payment_id = 1002; UPDATE wallets SET balance = balance + 1 WHERE user_id = 10`},
			want: map[verify.Kind]int64{verify.EntryMismatch: 1}},
		{name: "a succeeded payment without an entry",
			sql:  []string{`DELETE FROM entries WHERE payment_id = 2002; UPDATE wallets SET balance = balance + 1000 WHERE user_id = 20`},
			want: map[verify.Kind]int64{verify.SucceededWithoutEntry: 1}},
		{name: "a succeeded outcome came for a failed payment, and one failed for a succeeded payment",
			sql: []string{`INSERT INTO outcome_conflicts (payment_id, payment_uid, user_id, status, outcome, reason, actor) VALUES
				(1004, '00000000-0000-7000-8000-000000001004', 10, 'failed', 'succeeded', '', 'status-consumer'),
				(2002, '00000000-0000-7000-8000-000000002002', 20, 'succeeded', 'failed', 'declined', 'status-consumer')`},
			want: map[verify.Kind]int64{verify.OutcomeConflict: 2}},
		{name: "a resolved conflict is not a violation",
			sql: []string{`INSERT INTO outcome_conflicts (payment_id, payment_uid, user_id, status, outcome, actor, resolved_at, resolved_by, resolution)
				VALUES (1004, '00000000-0000-7000-8000-000000001004', 10, 'failed', 'succeeded', 'status-consumer',
				        now(), 'cli:alice', 'not executed: the statement has no execution under its key')`},
			want: nil},
		{name: "executed twice with the same key",
			stmt: plus(exec(0, key(1002), 10, -3000)),
			want: map[verify.Kind]int64{verify.PaidTwice: 1}},
		{name: "executed there, declined here",
			stmt: plus(exec(0, key(1004), 10, -200)),
			want: map[verify.Kind]int64{verify.ExecutedButFailed: 1}},
		{name: "executed there, still in flight here past the bound",
			sql:  []string{`UPDATE payments SET created_at = now() - interval '10 minutes' WHERE id = 1003`},
			stmt: plus(exec(0, key(1003), 10, -500)),
			want: map[verify.Kind]int64{verify.StuckNonfinal: 1, verify.StuckInFlight: 1, verify.ExecutedNotSucceeded: 1}},
		{name: "executed for another amount",
			stmt: verify.SliceStatement{exec(1, key(1002), 10, -3001), exec(2, "", 20, -1000)},
			want: map[verify.Kind]int64{verify.AmountMismatch: 1}},
		{name: "executed a payment we do not have",
			stmt: plus(exec(0, key(999999), 10, -10)),
			want: map[verify.Kind]int64{verify.ExecutionWithoutPayment: 1}},
		{name: "executed twice a payment we do not have",
			stmt: plus(exec(0, key(999999), 10, -10), exec(0, key(999999), 10, -10)),
			want: map[verify.Kind]int64{verify.ExecutionWithoutPayment: 2, verify.PaidTwice: 1}},
		{name: "a payment id reused after a restore is not its executions' payment",
			// 1003's id, another uid: the execution was of a payment lost in a
			// restore, and 1003 (a new payment with the reused id) was never executed.
			stmt: plus(exec(0, key(991003), 10, -500)),
			want: map[verify.Kind]int64{verify.ExecutionWithoutPayment: 1}},
		{name: "a key of another form is compared as an execution without a key",
			stmt: plus(exec(0, "payment-1002", 10, -3000)),
			want: map[verify.Kind]int64{verify.UnmatchedExecutions: 1}},
		{name: "succeeded here, never executed with its key",
			stmt: verify.SliceStatement{exec(2, "", 20, -1000)},
			want: map[verify.Kind]int64{verify.SucceededNotExecuted: 1}},
		{name: "succeeded here, no as-is execution of that user and amount",
			stmt: verify.SliceStatement{exec(1, key(1002), 10, -3000)},
			want: map[verify.Kind]int64{verify.SucceededNotExecuted: 1}},
		{name: "a statement that begins after a payment was made says nothing of it",
			stmt: verify.SliceStatement{exec(1, key(1002), 10, -3000)}, from: time.Second,
			want: nil},
		{name: "a statement that begins before a payment was made must hold it",
			stmt: verify.SliceStatement{exec(1, key(1002), 10, -3000)}, from: time.Hour,
			want: map[verify.Kind]int64{verify.SucceededNotExecuted: 1}},
		{name: "a statement's executions are accounted for whenever their payment was made",
			stmt: plus(exec(0, key(1004), 10, -200), exec(0, "", 20, -77)), from: time.Second,
			want: map[verify.Kind]int64{verify.ExecutedButFailed: 1, verify.UnmatchedExecutions: 1}},
		{name: "as-is: executed twice for one payment",
			stmt: plus(exec(0, "", 20, -1000)),
			want: map[verify.Kind]int64{verify.UnmatchedExecutions: 1}},
		{name: "as-is: executed with no payment of that amount",
			stmt: plus(exec(0, "", 20, -77), exec(0, "", 20, -77)),
			want: map[verify.Kind]int64{verify.UnmatchedExecutions: 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pool := newDB(t, tt.sql...)
			var stmt verify.Statement
			if tt.stmt != nil {
				stmt = tt.stmt
			}
			cfg := verify.DefaultConfig()
			if tt.stuckAfter != nil {
				cfg.StuckAfter = *tt.stuckAfter
			}
			if tt.from > 0 {
				cfg.StatementFrom = time.Now().Add(-tt.from)
			}
			rep, err := verify.New(pool, stmt, cfg).Check(context.Background())
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			wantKinds := len(verify.LedgerKinds)
			if cfg.StuckAfter == 0 {
				wantKinds-- // stuck_nonfinal is off
			}
			if tt.stmt != nil {
				wantKinds += len(verify.StatementKinds)
			}
			if len(rep.Findings) != wantKinds || rep.Statement != (tt.stmt != nil) {
				t.Errorf("checked %d kinds (statement %v), want %d", len(rep.Findings), rep.Statement, wantKinds)
			}
			got := map[verify.Kind]int64{}
			for _, f := range rep.Findings {
				if f.Count != 0 {
					got[f.Kind] = f.Count
				}
				// Per-group kinds (as-is) have one example per group.
				if (len(f.Examples) == 0) != (f.Count == 0) || len(f.Examples) > 10 {
					t.Errorf("%s: %d examples for count %d", f.Kind, len(f.Examples), f.Count)
				}
			}
			if !equalCounts(got, tt.want) {
				var b strings.Builder
				_ = rep.WriteText(&b)
				t.Errorf("violations = %v, want %v\n%s", got, tt.want, b.String())
			}
			if rep.OK() != (len(tt.want) == 0) {
				t.Errorf("OK() = %v with %d violations", rep.OK(), rep.Violations())
			}
		})
	}
}

func equalCounts(a, b map[verify.Kind]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestReportCountsAndText(t *testing.T) {
	t.Parallel()
	pool := newDB(t)
	rep, err := verify.New(pool, cleanStatement(), verify.DefaultConfig()).Check(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Wallets != 2 || rep.Payments != 6 || rep.Entries != 4 || rep.Executions != 2 {
		t.Errorf("counts: wallets %d payments %d entries %d executions %d, want 2 6 4 2", rep.Wallets, rep.Payments, rep.Entries, rep.Executions)
	}
	want := map[string]int64{"succeeded": 4, "processing": 1, "failed": 1}
	for s, n := range want {
		if rep.ByStatus[s] != n {
			t.Errorf("ByStatus[%s] = %d, want %d", s, rep.ByStatus[s], n)
		}
	}
	var b strings.Builder
	if err := rep.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "OK: no violation") {
		t.Errorf("text report:\n%s", b.String())
	}
	if _, err := json.Marshal(rep); err != nil {
		t.Errorf("json: %v", err)
	}
}

func TestMaxExamples(t *testing.T) {
	t.Parallel()
	pool := newDB(t, `
		INSERT INTO wallets (user_id, balance) SELECT g, 1 FROM generate_series(100, 124) g`)
	cfg := verify.DefaultConfig()
	cfg.MaxExamples = 3
	rep, err := verify.New(pool, nil, cfg).Check(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	f, _ := rep.Finding(verify.BalanceMismatch)
	if f.Count != 25 || len(f.Examples) != 3 || f.Examples[0].UserID != 100 {
		t.Errorf("balance_mismatch = %+v, want count 25 with 3 examples from user 100", f)
	}
}

func TestHTTPStatement(t *testing.T) {
	t.Parallel()
	// The processor-sim's GET /sim/executions body.
	body := `{"count":2,"executions":[
		{"seq":1,"id":"pay_00000001","idempotency_key":"` + key(1002) + `","user_id":10,"amount":-3000,"reference":"1002","api":"proposed","executed_at":"2026-11-25T14:10:36.689985787Z"},
		{"seq":2,"id":"pay_00000002","idempotency_key":"","user_id":20,"amount":-1000,"api":"as-is","executed_at":"2026-11-25T14:10:37Z"}]}`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/sim/executions" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)

	var got []verify.Execution
	for e, err := range verify.NewHTTPStatement(srv.URL).Executions(context.Background()) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, e)
	}
	uid0, ok0 := got[0].PaymentUID()
	_, ok1 := got[1].PaymentUID()
	if len(got) != 2 || !ok0 || key(1002) != payment.ProcessorKey(uid0) || ok1 || got[1].UserID != 20 || got[0].ExecutedAt.IsZero() {
		t.Fatalf("executions = %+v", got)
	}

	pool := newDB(t)
	rep, err := verify.New(pool, verify.NewHTTPStatement(srv.URL), verify.DefaultConfig()).Check(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || rep.Executions != 2 {
		var b strings.Builder
		_ = rep.WriteText(&b)
		t.Errorf("report over HTTP:\n%s", b.String())
	}

	bad := &verify.HTTPStatement{URL: srv.URL + "/nope"}
	if _, err := verify.New(pool, bad, verify.DefaultConfig()).Check(context.Background()); err == nil {
		t.Error("a statement answering 404 did not fail the check")
	}
}

func TestReportShowsTheLastRestore(t *testing.T) {
	t.Parallel()
	pool := newDB(t)
	rep, err := verify.New(pool, nil, verify.DefaultConfig()).Check(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.LastRestore != nil {
		t.Errorf("LastRestore = %+v on a database never restored", rep.LastRestore)
	}
	if _, err := pool.Exec(context.Background(), `
		INSERT INTO restores (actor, schema_version_before) VALUES ('cli:alice', 4), ('cli:bob', 5)`); err != nil {
		t.Fatal(err)
	}
	rep, err = verify.New(pool, nil, verify.DefaultConfig()).Check(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	_ = rep.WriteText(&b)
	if rep.LastRestore == nil || rep.LastRestore.Actor != "cli:bob" || !strings.Contains(b.String(), "last database restore: recorded ") ||
		!strings.Contains(b.String(), "by cli:bob") || !rep.OK() {
		t.Errorf("LastRestore = %+v\n%s", rep.LastRestore, b.String())
	}
}

// TestAppendStatement: a loaded statement brought up to date reads only what
// was executed since, and ends as loading the whole statement would; a
// statement that no longer holds what was loaded is refused as changed, and
// nothing is added.
func TestAppendStatement(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := newDB(t)
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	rows := func() []int64 {
		t.Helper()
		var seqs []int64
		rs, err := conn.Query(ctx, `SELECT seq FROM `+verify.StatementTable+` ORDER BY seq`)
		if err != nil {
			t.Fatal(err)
		}
		seqs, err = pgx.CollectRows(rs, pgx.RowTo[int64])
		if err != nil {
			t.Fatal(err)
		}
		return seqs
	}

	first := cleanStatement()
	l, err := verify.LoadStatement(ctx, conn.Conn(), first)
	if err != nil {
		t.Fatal(err)
	}
	if l.LastSeq != 2 || l.LastRef != first[1].ID || l.Executions != 2 {
		t.Fatalf("loaded %+v, want 2 executions, the last seq 2 %q", l, first[1].ID)
	}

	// Three more executions: the statement asked from seq 1 (the last one
	// loaded, read again as a check) gives 2, 3, 4, 5.
	grown := &countingStatement{SliceStatement: append(slices.Clone(first),
		exec(3, "", 20, -1), exec(4, "", 20, -2), exec(5, "", 20, -3))}
	l, err = verify.AppendStatement(ctx, conn.Conn(), grown, l)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(grown.after) != "[1]" || grown.whole != 0 {
		t.Errorf("read the statement after %v and %d times whole, want after [1] and never whole", grown.after, grown.whole)
	}
	if l.Executions != 5 || l.LastSeq != 5 || fmt.Sprint(rows()) != "[1 2 3 4 5]" {
		t.Errorf("after the append: %+v, rows %v; want 5 executions, 1 to 5", l, rows())
	}
	// Nothing new: nothing added.
	if l, err = verify.AppendStatement(ctx, conn.Conn(), grown, l); err != nil || l.Executions != 5 {
		t.Errorf("append of nothing: %+v, %v", l, err)
	}

	for _, tt := range []struct {
		name string
		stmt verify.SliceStatement
	}{
		{"started afresh, shorter", verify.SliceStatement{exec(1, "", 20, -7)}},
		{"another execution 5", append(slices.Clone(grown.SliceStatement[:4]), verify.Execution{Seq: 5, ID: "pay_other", UserID: 20, Amount: -99})},
		{"out of order after 5", append(slices.Clone(grown.SliceStatement), exec(7, "", 20, -4), exec(6, "", 20, -5))},
	} {
		got, err := verify.AppendStatement(ctx, conn.Conn(), &countingStatement{SliceStatement: tt.stmt}, l)
		if !errors.Is(err, verify.ErrStatementChanged) {
			t.Errorf("%s: %v, want ErrStatementChanged", tt.name, err)
		}
		if got.Executions != l.Executions || got.LastSeq != l.LastSeq {
			t.Errorf("%s: returned %+v, want the statement as loaded before", tt.name, got)
		}
	}
}

// countingStatement records how it was read.
type countingStatement struct {
	verify.SliceStatement
	whole int
	after []int64
}

func (s *countingStatement) Executions(ctx context.Context) iter.Seq2[verify.Execution, error] {
	s.whole++
	return s.SliceStatement.Executions(ctx)
}

func (s *countingStatement) ExecutionsAfter(ctx context.Context, seq int64) iter.Seq2[verify.Execution, error] {
	s.after = append(s.after, seq)
	return s.SliceStatement.ExecutionsAfter(ctx, seq)
}
