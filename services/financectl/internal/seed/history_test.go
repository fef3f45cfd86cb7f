package seed_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/finsvc/finance/pkg/pgtest"
	"github.com/finsvc/finance/pkg/verify"
	"github.com/finsvc/finance/services/financectl/internal/seed"
)

// TestUsersHistory seeds users with a history of 20 payments each and
// requires the ledger to be whole: pkg/verify clean (with an empty processor
// statement too: seeded payments are source 'seed', never sent to the
// processor), every wallet's event_seq at its last user_seq, user_seq
// 1..20 without gaps, and entry ids in the order the payments were made
// (the feed's order). A second run skips every user and changes nothing.
func TestUsersHistory(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.NewPool(t)
	end := time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC)
	o := seed.UsersOptions{Count: 30, StartID: 500, Balance: 10_000, PaymentsPerUser: 20, BatchSize: 7, End: end}
	got, err := seed.Users(ctx, pool, o)
	if err != nil {
		t.Fatalf("Users: %v", err)
	}
	if diff := cmp.Diff(seed.UsersResult{Created: 30, Entries: 600}, got); diff != "" {
		t.Errorf("Users result (-want +got):\n%s", diff)
	}
	checkLedger(t, pool, end)
	checkHashes(t, pool)
	before := snapshot(t, pool)

	// A rerun over a wider range creates only the new users, this time
	// with PostgreSQL's foreign key checks.
	o.Count, o.StartID, o.CheckFKs = 40, 490, true
	got, err = seed.Users(ctx, pool, o)
	if err != nil {
		t.Fatalf("second Users: %v", err)
	}
	if diff := cmp.Diff(seed.UsersResult{Created: 10, Skipped: 30, Entries: 200}, got); diff != "" {
		t.Errorf("second Users result (-want +got):\n%s", diff)
	}
	checkLedger(t, pool, end)
	after := snapshot(t, pool)
	for u, w := range before {
		if after[u] != w {
			t.Errorf("user %d changed by the rerun: %+v, then %+v", u, w, after[u])
		}
	}
}

func checkLedger(t *testing.T, pool *pgxpool.Pool, end time.Time) {
	t.Helper()
	ctx := context.Background()
	for _, stmt := range []verify.Statement{nil, verify.SliceStatement{}} {
		rep, err := verify.New(pool, stmt, verify.DefaultConfig()).Check(ctx)
		if err != nil {
			t.Fatalf("verify: %v", err)
		}
		if !rep.OK() {
			t.Errorf("verify (statement %v) found violations: %+v", stmt != nil, rep.Findings)
		}
	}
	var bad int64
	if err := pool.QueryRow(ctx, `
		SELECT count(*) FROM wallets w
		WHERE w.event_seq <> (SELECT coalesce(max(user_seq), 0) FROM payment_transitions t WHERE t.user_id = w.user_id)
		   OR w.event_seq <> (SELECT count(*) FROM payment_transitions t WHERE t.user_id = w.user_id)
		   OR w.held <> 0 OR w.balance < 0`).Scan(&bad); err != nil || bad != 0 {
		t.Errorf("wallets whose event_seq is not their last user_seq, with gaps, holds or overdrafts: %d (%v)", bad, err)
	}
	// Every payment: succeeded, source seed, before end, one transition
	// '' → succeeded; entry ids follow the user's user_seq.
	if err := pool.QueryRow(ctx, `
		SELECT count(*) FROM payments p
		LEFT JOIN payment_transitions t ON t.payment_id = p.id
		WHERE p.status <> 'succeeded' OR p.source <> 'seed' OR p.created_at >= $1
		   OR t.id IS NULL OR t.from_status <> '' OR t.to_status <> 'succeeded' OR t.actor <> $2`, end, seed.Actor).Scan(&bad); err != nil || bad != 0 {
		t.Errorf("seeded payments without their one transition, not succeeded or after the end: %d (%v)", bad, err)
	}
	if err := pool.QueryRow(ctx, `
		SELECT count(*) FROM (
			SELECT e.id, t.user_seq, e.occurred_at,
			       lag(t.user_seq) OVER w AS prev_seq, lag(e.occurred_at) OVER w AS prev_at
			FROM entries e JOIN payment_transitions t USING (payment_id)
			WINDOW w AS (PARTITION BY e.user_id ORDER BY e.id)) x
		WHERE x.prev_seq IS NOT NULL AND (x.user_seq <> x.prev_seq + 1 OR x.occurred_at <= x.prev_at)`).Scan(&bad); err != nil || bad != 0 {
		t.Errorf("entries out of the order their payments were made: %d (%v)", bad, err)
	}
	// The history has debits to merchants, not only top-ups.
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM entries WHERE amount < 0`).Scan(&bad); err != nil || bad == 0 {
		t.Errorf("debits in the seeded history: %d (%v), want some", bad, err)
	}
}

type walletRow struct {
	Balance, EventSeq int64
	UpdatedAt         time.Time
}

func snapshot(t *testing.T, pool *pgxpool.Pool) map[int64]walletRow {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT user_id, balance, event_seq, updated_at FROM wallets`)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int64]walletRow{}
	var u int64
	var w walletRow
	if _, err := pgx.ForEachRow(rows, []any{&u, &w.Balance, &w.EventSeq, &w.UpdatedAt}, func() error {
		out[u] = w
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}
