package cli_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/finsvc/finance/pkg/payment"
)

// execution is one execution of the fake processor's statement.
func execution(seq int, uid uuid.UUID, user, amount int64, ago time.Duration) map[string]any {
	return map[string]any{"seq": seq, "id": fmt.Sprintf("pay_%d", seq), "idempotency_key": payment.ProcessorKey(uid),
		"user_id": user, "amount": amount, "reference": "100001", "api": "proposed",
		"executed_at": time.Now().Add(-ago).UTC().Format(time.RFC3339Nano)}
}

func countRows(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestRecover drives financectl recover against a fake processor whose
// statement has two executions this database lost: the dry run, refusals
// that change nothing, the run, and verify afterwards.
func TestRecover(t *testing.T) {
	t.Parallel()
	env, url := demoDB(t)
	pool := openPool(t, url)
	debit, top, stranger := payment.NewUID(), payment.NewUID(), payment.NewUID()
	proc := &fakeProcessor{executions: []map[string]any{
		execution(1, debit, 1001, -700, 5*time.Minute),
		execution(2, top, 1002, 2500, 4*time.Minute),
	}}
	sim := proc.serve(t)
	debitKey, topKey := payment.ProcessorKey(debit), payment.ProcessorKey(top)

	// Before: verify names both.
	if r := run(t, env, "verify", "--processor-url", sim); r.code != 1 || !strings.Contains(r.stdout, "execution_without_payment  2") {
		t.Errorf("verify before recover: exit %d\n%s", r.code, r.stdout)
	}

	// The dry run: the plan and the command to apply it; nothing changes.
	r := run(t, env, "recover", "--processor-url", sim)
	if r.code != 0 || !strings.Contains(r.stdout, "dry run: nothing changed") || !strings.Contains(r.stdout, "would re-create 2 payments") ||
		!strings.Contains(r.stdout, debitKey) || !strings.Contains(r.stdout, `merchant 1 "Pleo"`) ||
		!strings.Contains(r.stdout, "financectl recover --apply --processor-url "+sim) {
		t.Errorf("recover (dry run): exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if n := countRows(t, pool, `SELECT count(*) FROM payments WHERE source = 'recovered'`); n != 0 {
		t.Fatalf("a dry run recovered %d payments", n)
	}

	// Refused, changing nothing: exit 1 with the reason; bad usage: exit 2.
	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--apply", "--key", debitKey, "--amount", "-701"}, 1, "the processor executed key " + debitKey + " for amount -700, not -701"},
		{[]string{"--apply", "--key", payment.ProcessorKey(stranger)}, 1, "the processor's statement has no execution under key " + payment.ProcessorKey(stranger)},
		{[]string{"--apply", "--merchant-id", "77"}, 1, "merchant 77 does not exist"},
		{[]string{"--apply", "--key", "payment-100001"}, 2, `"payment-100001" is not a payment key: want payment-<uid>`},
		{[]string{"--apply", "--amount", "-700"}, 2, "--amount confirms exactly one --key"},
		{[]string{"--apply", "--no-statement"}, 2, "--no-statement cannot be used"},
	} {
		r := run(t, env, append([]string{"recover", "--processor-url", sim}, tt.args...)...)
		if r.code != tt.code || !strings.Contains(r.stderr, tt.want) {
			t.Errorf("recover %v: exit %d, want %d with %q\n%s", tt.args, r.code, tt.code, tt.want, r.stderr)
		}
	}
	if n := countRows(t, pool, `SELECT count(*) FROM recoveries`); n != 0 {
		t.Fatalf("refused runs recovered %d payments", n)
	}

	// One key, confirmed by its amount, then the rest.
	r = run(t, env, "recover", "--processor-url", sim, "--apply", "--key", topKey, "--amount", "2500")
	if r.code != 0 || !strings.Contains(r.stdout, "re-created 1 payments") || !strings.Contains(r.stdout, "100000 → 102500") {
		t.Errorf("recover --key: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = run(t, env, "recover", "--processor-url", sim, "--apply")
	if r.code != 0 || !strings.Contains(r.stdout, "re-created 1 payments") || !strings.Contains(r.stdout, debitKey) ||
		!strings.Contains(r.stdout, "financectl verify --processor-url "+sim) {
		t.Errorf("recover --apply: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	var actor string
	if err := pool.QueryRow(context.Background(), `SELECT r.actor FROM recoveries r JOIN payments p ON p.id = r.payment_id WHERE p.uid = $1`, debit).Scan(&actor); err != nil || !strings.HasPrefix(actor, "cli:") {
		t.Errorf("recoveries actor = %q, %v", actor, err)
	}
	if r := run(t, env, "verify", "--processor-url", sim); r.code != 0 {
		t.Errorf("verify after recover: exit %d\n%s", r.code, r.stdout)
	}
	r = run(t, env, "recover", "--processor-url", sim, "--apply", "--key", debitKey)
	if r.code != 1 || !strings.Contains(r.stderr, "key "+debitKey+" is already payment ") || !strings.Contains(r.stderr, "nothing to recover") {
		t.Errorf("recover of a recovered key: exit %d\n%s", r.code, r.stderr)
	}

	// A user this database does not know: the whole run is refused.
	proc.mu.Lock()
	proc.executions = append(proc.executions, execution(3, stranger, 99999, 100, time.Minute), execution(4, payment.NewUID(), 1001, -5, time.Minute))
	proc.mu.Unlock()
	r = run(t, env, "recover", "--processor-url", sim, "--apply")
	if r.code != 1 || !strings.Contains(r.stderr, "user 99999 has no wallet here") {
		t.Errorf("recover with an unknown user: exit %d\n%s", r.code, r.stderr)
	}
	if n := countRows(t, pool, `SELECT count(*) FROM recoveries`); n != 2 {
		t.Errorf("%d recoveries after a refused run, want 2", n)
	}
}

// TestAfterRestore runs financectl after-restore on a database that lost a
// payment and left two stuck: it records the restore, repairs the one the
// processor executed, leaves the one it never saw, lists the lost
// execution and prints the recover commands, which then work.
func TestAfterRestore(t *testing.T) {
	t.Parallel()
	env, url := demoDB(t)
	pool := openPool(t, url)
	ctx := context.Background()
	executed, queued, lost := payment.NewUID(), payment.NewUID(), payment.NewUID()
	if _, err := pool.Exec(ctx, `UPDATE wallets SET held = 800 WHERE user_id = 1001`); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `
		INSERT INTO payments (uid, user_id, merchant_id, amount, status, idempotency_key, request_hash, hold, created_at, updated_at)
		VALUES ($1, 1001, 4593, -500, 'accepted', 'a-1', 'h', 500, now() - interval '4 minutes', now() - interval '4 minutes'),
		       ($2, 1001, 4593, -300, 'processing', 'a-2', 'h', 300, now() - interval '4 minutes', now() - interval '4 minutes')`,
		executed, queued); err != nil {
		t.Fatal(err)
	}
	proc := &fakeProcessor{
		executions: []map[string]any{execution(1, executed, 1001, -500, 3*time.Minute), execution(2, lost, 1002, -1200, time.Minute)},
		resources:  map[string]map[string]any{},
	}
	sim := proc.serve(t)

	r := run(t, env, "after-restore", "--processor-url", sim)
	if r.code != 0 {
		t.Fatalf("after-restore: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{
		"1. schema version ",
		"2. restore recorded: restores row 1, by cli:",
		"3. reconciliation pass:",
		"resolved accepted → succeeded",
		"left processing: processing for 4m",
		"not found by the processor under " + payment.ProcessorKey(queued) + ": its request may still be queued (Kafka)",
		"executions without payment (uid not held here, e.g. lost in a restore): 1",
		payment.ProcessorKey(lost) + "  1002  -1200",
		"financectl recover --processor-url " + sim + "\n",
		"financectl recover --apply --processor-url " + sim + "\n",
		"financectl verify --processor-url " + sim + "\n",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("after-restore output lacks %q:\n%s", want, r.stdout)
		}
	}
	var (
		lostN, resolved, left int64
		actor                 string
		finished              bool
	)
	if err := pool.QueryRow(ctx, `SELECT executions_without_payment, resolved, left_open, actor, finished_at IS NOT NULL FROM restores`).
		Scan(&lostN, &resolved, &left, &actor, &finished); err != nil {
		t.Fatal(err)
	}
	if lostN != 1 || resolved != 1 || left != 1 || !strings.HasPrefix(actor, "cli:") || !finished {
		t.Errorf("restores row: lost %d resolved %d left %d actor %q finished %v", lostN, resolved, left, actor, finished)
	}

	// The printed command recovers the lost payment; verify shows the
	// restore, and is clean but for the payment that is still processing.
	if r := run(t, env, "recover", "--apply", "--processor-url", sim); r.code != 0 || !strings.Contains(r.stdout, "re-created 1 payments") {
		t.Fatalf("recover --apply: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	var restoreID int64
	if err := pool.QueryRow(ctx, `SELECT restore_id FROM recoveries`).Scan(&restoreID); err != nil || restoreID != 1 {
		t.Errorf("recoveries.restore_id = %d, %v; want 1", restoreID, err)
	}
	r = run(t, env, "verify", "--processor-url", sim)
	if r.code != 1 || !strings.Contains(r.stdout, "last database restore: recorded ") || !strings.Contains(r.stdout, "stuck_nonfinal             1") ||
		!strings.Contains(r.stdout, "FAILED: 1 violations") {
		t.Errorf("verify after recover: exit %d\n%s", r.code, r.stdout)
	}
	if r := run(t, env, "verify", "--processor-url", sim, "--stuck-after", "0"); r.code != 0 {
		t.Errorf("verify --stuck-after 0: exit %d\n%s", r.code, r.stdout)
	}
}

// TestAfterRestoreMigrates runs after-restore on a database without the
// schema, as a backup taken before a migration is.
func TestAfterRestoreMigrates(t *testing.T) {
	t.Parallel()
	url, _ := freshDatabaseURL(t)
	env := map[string]string{"DATABASE_URL": url}
	if r := run(t, env, "createdb"); r.code != 0 {
		t.Fatal(r.stderr)
	}
	r := run(t, env, "after-restore", "--api", "as-is", "--no-statement")
	if r.code != 0 || !strings.Contains(r.stdout, "1. schema migrated from version 0 to ") ||
		!strings.Contains(r.stdout, "the database holds no payment") || !strings.Contains(r.stdout, "no statement was read") {
		t.Errorf("after-restore on an empty database: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := run(t, env, "after-restore", "--api", "v9"); r.code != exitUsage {
		t.Errorf("after-restore --api v9: exit %d", r.code)
	}
}
