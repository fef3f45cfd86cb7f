package check_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/finsvc/finance/loadtest/internal/check"
	"github.com/finsvc/finance/loadtest/internal/fakes"
	"github.com/finsvc/finance/loadtest/internal/target"
	"github.com/finsvc/finance/pkg/payment"
	"github.com/finsvc/finance/pkg/pgtest"
	"github.com/finsvc/finance/pkg/simclient"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// counts are the parts of a report a test compares.
type counts struct {
	Lost, PaidTwice, Stuck, BalanceMismatch                    int64
	ToldOK, ToldFailed, Unresolved, Executions                 int64
	AcceptedMissing, ExecutedButFailed, ClientErrorsInDatabase int64
	ExecutedToldFailed, UnresolvedExecuted, ToldOKNotExecuted  int64
	ExecutedNotRecorded, RecordedNotExecuted, OrphanExecutions int64
}

func countsOf(r check.Report) counts {
	return counts{
		Lost: r.Lost, PaidTwice: r.PaidTwice, Stuck: r.Stuck, BalanceMismatch: r.BalanceMismatch,
		ToldOK: r.ToldOK, ToldFailed: r.ToldFailed, Unresolved: r.Unresolved, Executions: r.Executions,
		AcceptedMissing: r.AcceptedMissing, ExecutedButFailed: r.ExecutedButFailed, ClientErrorsInDatabase: r.ClientErrorsInDatabase,
		ExecutedToldFailed: r.ExecutedToldFailed, UnresolvedExecuted: r.UnresolvedExecuted, ToldOKNotExecuted: r.ToldOKNotExecuted,
		ExecutedNotRecorded: r.ExecutedNotRecorded, RecordedNotExecuted: r.RecordedNotExecuted, OrphanExecutions: r.OrphanExecutions,
	}
}

// --- pipeline ---------------------------------------------------------------

// pipelineDB is a pipeline database with users 1..3 holding 10000 each,
// seeded as financectl seed does.
func pipelineDB(t *testing.T) *pgxpool.Pool {
	t.Helper()
	pool := pgtest.NewPool(t)
	exec(t, pool, `INSERT INTO merchants (id, name) VALUES (1, 'Pleo'), (4593, 'Apple')`)
	exec(t, pool, `INSERT INTO wallets (user_id) SELECT generate_series(1, 3)`)
	for u := int64(1); u <= 3; u++ {
		id := insertPayment(t, pool, u, 10_000, "succeeded", 0, fmt.Sprintf("seed-%d", u))
		exec(t, pool, `UPDATE payments SET source = 'seed' WHERE id = $1`, id)
		exec(t, pool, `INSERT INTO entries (user_id, payment_id, merchant_id, amount, occurred_at) VALUES ($1, $2, 4593, 10000, now())`, u, id)
		exec(t, pool, `UPDATE wallets SET balance = 10000 WHERE user_id = $1`, u)
	}
	return pool
}

func exec(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) {
	t.Helper()
	if _, err := pool.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func insertPayment(t *testing.T, pool *pgxpool.Pool, user, amount int64, status string, hold int64, key string) int64 {
	t.Helper()
	var id int64
	err := pool.QueryRow(context.Background(), `INSERT INTO payments (user_id, merchant_id, amount, status, idempotency_key, request_hash, hold)
		VALUES ($1, 4593, $2, $3, $4, 'h', $5) RETURNING id`, user, amount, status, key, hold).Scan(&id)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// settle records a succeeded payment the way the status consumer does.
func settle(t *testing.T, pool *pgxpool.Pool, user, amount int64, key string) int64 {
	t.Helper()
	id := insertPayment(t, pool, user, amount, "succeeded", 0, key)
	exec(t, pool, `INSERT INTO entries (user_id, payment_id, merchant_id, amount, occurred_at) VALUES ($1, $2, 4593, $3, now())`, user, id, amount)
	exec(t, pool, `UPDATE wallets SET balance = balance + $2 WHERE user_id = $1`, user, amount)
	return id
}

// execution is an execution as the dispatcher makes it: keyed by payment
// id's uid (payment.ProcessorKey), with reference "<id>"; reference, when
// not 0, overrides it (after a database restore, ids repeat and a reference
// can name another payment).
func execution(t *testing.T, pool *pgxpool.Pool, seq, id, reference, user, amount int64) simclient.Execution {
	t.Helper()
	var uid uuid.UUID
	if err := pool.QueryRow(context.Background(), `SELECT uid FROM payments WHERE id = $1`, id).Scan(&uid); err != nil {
		t.Fatal(err)
	}
	if reference == 0 {
		reference = id
	}
	return simclient.Execution{Seq: seq, ID: fmt.Sprintf("ref-%d", seq), IdempotencyKey: payment.ProcessorKey(uid),
		Reference: fmt.Sprint(reference), UserID: user, Amount: amount, API: "proposed", ExecutedAt: time.Now()}
}

func TestPipelineCheck(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// setup writes the run's payments and returns the client's view
		// and the processor's executions.
		setup func(t *testing.T, pool *pgxpool.Pool) ([]check.Write, []simclient.Execution)
		want  counts
	}{
		{
			name: "clean: two succeeded, one failed without execution, one client timeout resolved by key",
			setup: func(t *testing.T, pool *pgxpool.Pool) ([]check.Write, []simclient.Execution) {
				a := settle(t, pool, 1, -100, "run-0")
				b := settle(t, pool, 2, -101, "run-1")
				insertPayment(t, pool, 3, -102, "failed", 0, "run-2")
				c := settle(t, pool, 3, -103, "run-3")
				return []check.Write{
						{UserID: 1, Amount: -100, Key: "run-0", Code: 202, Class: target.OK, PaymentID: a},
						{UserID: 2, Amount: -101, Key: "run-1", Code: 202, Class: target.OK, PaymentID: b},
						{UserID: 3, Amount: -102, Key: "run-2", Code: 202, Class: target.OK},
						{UserID: 3, Amount: -103, Key: "run-3", Class: target.Timeout},
					}, []simclient.Execution{
						execution(t, pool, 1, a, 0, 1, -100), execution(t, pool, 2, b, 0, 2, -101), execution(t, pool, 3, c, 0, 3, -103),
					}
			},
			want: counts{ToldOK: 3, ToldFailed: 1, Unresolved: 1, Executions: 3, ClientErrorsInDatabase: 1},
		},
		{
			name: "accepted but missing, paid twice, executed but failed, stuck",
			setup: func(t *testing.T, pool *pgxpool.Pool) ([]check.Write, []simclient.Execution) {
				a := settle(t, pool, 1, -100, "run-0")
				b := insertPayment(t, pool, 2, -101, "failed", 0, "run-1")
				insertPayment(t, pool, 3, -102, "processing", 102, "run-2")
				exec(t, pool, `UPDATE wallets SET held = 102 WHERE user_id = 3`)
				return []check.Write{
						{UserID: 1, Amount: -100, Key: "run-0", Code: 202, Class: target.OK},
						{UserID: 2, Amount: -101, Key: "run-1", Code: 202, Class: target.OK},
						{UserID: 3, Amount: -102, Key: "run-2", Code: 202, Class: target.OK},
						{UserID: 3, Amount: -199, Key: "run-3", Code: 202, Class: target.OK},
					}, []simclient.Execution{
						execution(t, pool, 1, a, 0, 1, -100), execution(t, pool, 2, a, 0, 1, -100), execution(t, pool, 3, b, 0, 2, -101),
					}
			},
			want: counts{Lost: 2, PaidTwice: 1, Stuck: 1, ToldOK: 4, Executions: 3, AcceptedMissing: 1, ExecutedButFailed: 1},
		},
		{
			name: "wallet drift, succeeded never executed, orphan execution",
			setup: func(t *testing.T, pool *pgxpool.Pool) ([]check.Write, []simclient.Execution) {
				a := settle(t, pool, 1, -100, "run-0")
				exec(t, pool, `UPDATE wallets SET balance = balance + 1 WHERE user_id = 2`)
				orphan := execution(t, pool, 1, a, 0, 3, -5)
				orphan.IdempotencyKey = payment.ProcessorKey(payment.NewUID())
				return []check.Write{{UserID: 1, Amount: -100, Key: "run-0", Code: 202, Class: target.OK, PaymentID: a}},
					[]simclient.Execution{orphan}
			},
			// verify: balance_mismatch (user 2), succeeded_not_executed
			// (payment a), execution_without_payment (the orphan).
			want: counts{Lost: 1, BalanceMismatch: 2, ToldOK: 1, Executions: 1, RecordedNotExecuted: 1, OrphanExecutions: 1},
		},
		{
			name: "keyed by uid: the key names the payment, whatever the reference says",
			setup: func(t *testing.T, pool *pgxpool.Pool) ([]check.Write, []simclient.Execution) {
				a := settle(t, pool, 1, -100, "run-0")
				b := settle(t, pool, 2, -101, "run-1")
				return []check.Write{
						{UserID: 1, Amount: -100, Key: "run-0", Code: 202, Class: target.OK, PaymentID: a},
						{UserID: 2, Amount: -101, Key: "run-1", Code: 202, Class: target.OK, PaymentID: b},
					}, []simclient.Execution{
						execution(t, pool, 1, a, b, 1, -100), execution(t, pool, 2, b, a, 2, -101),
					}
			},
			want: counts{ToldOK: 2, Executions: 2},
		},
		{
			name: "keyed by a uid no database row has: lost, even with the reference of a run payment",
			setup: func(t *testing.T, pool *pgxpool.Pool) ([]check.Write, []simclient.Execution) {
				a := settle(t, pool, 1, -100, "run-0")
				orphan := execution(t, pool, 2, a, 0, 1, -100)
				orphan.IdempotencyKey = payment.ProcessorKey(payment.NewUID())
				return []check.Write{{UserID: 1, Amount: -100, Key: "run-0", Code: 202, Class: target.OK, PaymentID: a}},
					[]simclient.Execution{execution(t, pool, 1, a, 0, 1, -100), orphan}
			},
			want: counts{Lost: 1, ToldOK: 1, Executions: 2, OrphanExecutions: 1},
		},
		{
			name: "a numeric key payment-<id> names no payment: matched by user and amount like a key-less execution",
			setup: func(t *testing.T, pool *pgxpool.Pool) ([]check.Write, []simclient.Execution) {
				a := settle(t, pool, 1, -100, "run-0")
				numeric := execution(t, pool, 1, a, 0, 1, -100)
				numeric.IdempotencyKey = fmt.Sprintf("payment-%d", a)
				stray := numeric
				stray.Seq, stray.IdempotencyKey, stray.UserID = 2, fmt.Sprintf("payment-%d", a+1), 2
				return []check.Write{{UserID: 1, Amount: -100, Key: "run-0", Code: 202, Class: target.OK, PaymentID: a}},
					[]simclient.Execution{numeric, stray}
			},
			// The first accounts for payment a; the second, of user 2, for
			// nothing (unmatched_executions).
			want: counts{Lost: 1, ToldOK: 1, Executions: 2, OrphanExecutions: 1},
		},
		{
			name: "the ledger is checked beyond the run's users",
			setup: func(t *testing.T, pool *pgxpool.Pool) ([]check.Write, []simclient.Execution) {
				exec(t, pool, `INSERT INTO wallets (user_id, balance, held) VALUES (99, 7, 0)`)
				return nil, nil
			},
			want: counts{BalanceMismatch: 1},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pool := pipelineDB(t)
			writes, execs := tc.setup(t, pool)
			rep, err := check.NewPipeline(pool, "run-", 1, 3).Check(context.Background(), writes, execs)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, countsOf(rep)); diff != "" {
				t.Errorf("counts (-want +got):\n%s\nexamples: %q", diff, rep.Examples)
			}
			if got, want := rep.Failed(), tc.want.Lost+tc.want.PaidTwice+tc.want.Stuck+tc.want.BalanceMismatch > 0; got != want {
				t.Errorf("Failed() = %v, want %v", got, want)
			}
			// Every violation pkg/verify found is in a verdict count: all
			// but the client's (accepted but missing) and the run's
			// deadline (stuck), which are this package's own.
			wantLedger := tc.want.Lost - tc.want.AcceptedMissing + tc.want.PaidTwice + tc.want.BalanceMismatch
			if rep.Ledger == nil || !rep.Ledger.Statement || rep.Ledger.Violations() != wantLedger {
				t.Errorf("pkg/verify's report %+v, want a statement compared and %d violations", rep.Ledger, wantLedger)
			}
		})
	}
}

func TestPipelineBacklog(t *testing.T) {
	t.Parallel()
	pool := pipelineDB(t)
	insertPayment(t, pool, 1, -1, "accepted", 1, "run-0")
	insertPayment(t, pool, 1, -2, "accepted", 2, "run-1")
	insertPayment(t, pool, 2, -3, "processing", 3, "run-2")
	insertPayment(t, pool, 2, -4, "unknown", 4, "run-3")
	insertPayment(t, pool, 3, -5, "accepted", 5, "other_run-0") // not this run's; _ is no wildcard
	insertPayment(t, pool, 3, -6, "failed", 0, "run-4")
	got, err := check.NewPipeline(pool, "run-", 1, 3).Backlog(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(check.Backlog{Accepted: 2, Processing: 1, Unknown: 1}, got); diff != "" {
		t.Errorf("Backlog (-want +got):\n%s", diff)
	}
}

// --- as-is ------------------------------------------------------------------

// legacyDB is a database with the as-is payments table, users 1..3 seeded.
func legacyDB(t *testing.T) *pgxpool.Pool {
	t.Helper()
	_, pool := fakes.LegacyDB(t, 1, 3)
	return pool
}

func asIs(seq, user, amount int64) simclient.Execution {
	return simclient.Execution{Seq: seq, ID: fmt.Sprintf("ref-%d", seq), UserID: user, Amount: amount, API: "as-is"}
}

func TestLegacyCheck(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		writes []check.Write
		stored [][2]int64 // user, amount
		execs  []simclient.Execution
		want   counts
	}{
		{
			name: "clean: succeeded and stored, refused and not executed",
			writes: []check.Write{
				{UserID: 1, Amount: -100, Code: 201, Class: target.OK},
				{UserID: 2, Amount: -100, Code: 503, Class: target.Unavailable},
			},
			stored: [][2]int64{{1, -100}},
			execs:  []simclient.Execution{asIs(1, 1, -100)},
			want:   counts{ToldOK: 1, ToldFailed: 1, Executions: 1},
		},
		{
			name: "the as-is defects: a timeout the processor executed, a 502 it did not",
			writes: []check.Write{
				{UserID: 1, Amount: -100, Code: 504, Class: target.ServerError},
				{UserID: 2, Amount: -100, Code: 502, Class: target.ServerError},
				{UserID: 3, Amount: -100, Class: target.Timeout},
			},
			execs: []simclient.Execution{asIs(1, 1, -100), asIs(2, 3, -100)},
			want: counts{Lost: 2, BalanceMismatch: 2, ToldFailed: 3, Unresolved: 3, Executions: 2,
				ExecutedToldFailed: 2, UnresolvedExecuted: 2, ExecutedNotRecorded: 2},
		},
		{
			name: "told succeeded without execution, executed twice, stored without execution",
			writes: []check.Write{
				{UserID: 1, Amount: -100, Code: 201, Class: target.OK},
				{UserID: 2, Amount: -100, Code: 201, Class: target.OK},
			},
			stored: [][2]int64{{1, -100}, {2, -100}, {3, -7}},
			execs:  []simclient.Execution{asIs(1, 2, -100), asIs(2, 2, -100), asIs(3, 3, -9)},
			// user 1: stored, never executed; user 2: executed twice,
			// stored once; user 3: stored -7, executed -9 unasked.
			want: counts{Lost: 3, PaidTwice: 1, BalanceMismatch: 3, ToldOK: 2, Executions: 3, ToldOKNotExecuted: 1,
				ExecutedNotRecorded: 2, RecordedNotExecuted: 2, OrphanExecutions: 1},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pool := legacyDB(t)
			l := check.NewLegacy(pool, 1, 3)
			baseline, err := l.MaxPaymentID(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range tc.stored {
				exec(t, pool, `INSERT INTO payments (amount, user_id, merchant_id) VALUES ($2, $1, 4593)`, s[0], s[1])
			}
			rep, err := l.Check(context.Background(), baseline, tc.writes, tc.execs)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, countsOf(rep), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("counts (-want +got):\n%s\nexamples: %q", diff, rep.Examples)
			}
		})
	}
}
