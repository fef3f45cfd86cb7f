package cli_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/finsvc/finance/pkg/pgtest"
	"github.com/finsvc/finance/pkg/schema"
)

// freshDatabaseURL returns the URL and name of a database on the test server
// that does not exist yet, dropped (if created) when t ends.
func freshDatabaseURL(t *testing.T) (url, name string) {
	t.Helper()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name = "financectl_test_" + hex.EncodeToString(b)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, pgtest.ServerURL())
		if err != nil {
			t.Logf("drop %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Logf("drop %s: %v", name, err)
		}
	})
	return pgtest.WithDatabase(pgtest.ServerURL(), name), name
}

func openPool(t *testing.T, url string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// TestCreatedbThenMigrate runs the steps of a fresh server in order.
func TestCreatedbThenMigrate(t *testing.T) {
	t.Parallel()
	url, name := freshDatabaseURL(t)
	env := map[string]string{"DATABASE_URL": url}
	// The newest schema version, as pgtest's fully migrated template has it:
	// the test need not change when a migration is added.
	latest, err := schema.Version(context.Background(), pgtest.NewPool(t))
	if err != nil {
		t.Fatal(err)
	}

	steps := []struct {
		args []string
		want string
	}{
		{[]string{"createdb"}, fmt.Sprintf("database %q created\n", name)},
		{[]string{"createdb"}, fmt.Sprintf("database %q exists\n", name)},
		{[]string{"migrate", "version"}, "schema version 0\n"},
		{[]string{"migrate"}, fmt.Sprintf("schema migrated from version 0 to %d\n", latest)},
		{[]string{"migrate", "up"}, fmt.Sprintf("schema version %d: up to date\n", latest)},
		{[]string{"migrate", "version"}, fmt.Sprintf("schema version %d\n", latest)},
	}
	for _, s := range steps {
		got := run(t, env, s.args...)
		if got.code != exitOK {
			t.Fatalf("%v: exit %d, stderr:\n%s", s.args, got.code, got.stderr)
		}
		if got.stdout != s.want {
			t.Errorf("%v: stdout = %q, want %q", s.args, got.stdout, s.want)
		}
	}
	var n int
	if err := openPool(t, url).QueryRow(context.Background(),
		`SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public' AND table_name IN
		 ('merchants', 'wallets', 'payments', 'entries', 'payment_transitions', 'outbox')`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 6 {
		t.Errorf("tables after migrate = %d, want 6", n)
	}
}

func TestDatabaseFailuresExit1(t *testing.T) {
	t.Parallel()
	missing, _ := freshDatabaseURL(t) // never created
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"migrate a missing database", []string{"migrate"}, "financectl: migrate: connect to postgres://postgres@127.0.0.1:5432/financectl_test_"},
		{"seed a missing database", []string{"seed", "--demo"}, "financectl: seed: connect to"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := run(t, map[string]string{"DATABASE_URL": missing}, tt.args...)
			if got.code != exitError {
				t.Fatalf("exit code = %d, want %d; stderr:\n%s", got.code, exitError, got.stderr)
			}
			if !strings.HasPrefix(got.stderr, tt.want) || !strings.Contains(got.stderr, "does not exist") {
				t.Errorf("stderr = %q, want prefix %q and the server's reason", got.stderr, tt.want)
			}
		})
	}
}

func TestSeedUnmigratedDatabaseExit1(t *testing.T) {
	t.Parallel()
	url, _ := freshDatabaseURL(t)
	env := map[string]string{"DATABASE_URL": url}
	if got := run(t, env, "createdb"); got.code != exitOK {
		t.Fatalf("createdb: %s", got.stderr)
	}
	got := run(t, env, "seed", "--demo")
	if got.code != exitError || !strings.Contains(got.stderr, `relation "merchants" does not exist`) {
		t.Errorf("seed on an empty database: exit %d, stderr %q", got.code, got.stderr)
	}
}

// feedTx is a feed transaction as the gateway's GET feed shows it.
type feedTx struct {
	ID        int64
	Name      string
	Amount    int64
	Timestamp int64
}

func TestSeedDemo(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.NewDB(t)
	pool := openPool(t, url)
	env := map[string]string{"DATABASE_URL": url}

	got := run(t, env, "seed", "--demo")
	if got.code != exitOK {
		t.Fatalf("seed --demo: exit %d, stderr:\n%s", got.code, got.stderr)
	}
	if want := "demo: merchants created 7, users created 6, skipped 0 (already exist)\n"; got.stdout != want {
		t.Errorf("stdout = %q, want %q", got.stdout, want)
	}
	before := snapshot(t, pool)

	// The challenge's feed example, exactly.
	var balance, held int64
	if err := pool.QueryRow(ctx, `SELECT balance, held FROM wallets WHERE user_id = 3456`).Scan(&balance, &held); err != nil {
		t.Fatal(err)
	}
	if balance != 2000 || held != 0 {
		t.Errorf("user 3456: balance %d held %d, want 2000 and 0", balance, held)
	}
	rows, err := pool.Query(ctx, `
		SELECT e.payment_id, m.name, e.amount, extract(epoch FROM e.occurred_at)::bigint
		FROM entries e JOIN merchants m ON m.id = e.merchant_id
		WHERE e.user_id = 3456 ORDER BY e.occurred_at`)
	if err != nil {
		t.Fatal(err)
	}
	feed, err := pgx.CollectRows(rows, pgx.RowToStructByPos[feedTx])
	if err != nil {
		t.Fatal(err)
	}
	wantFeed := []feedTx{
		{ID: 7844, Name: "Pleo", Amount: 5000, Timestamp: 1656477038},
		{ID: 7855, Name: "Apple", Amount: -3000, Timestamp: 1656487348},
	}
	if diff := cmp.Diff(wantFeed, feed); diff != "" {
		t.Errorf("feed of 3456 (-want +got):\n%s", diff)
	}

	// Every seeded user: one succeeded seed payment per entry, transitions by
	// financectl seed numbered 1.., and balances of 100000 for 1001..1005.
	type userRow struct {
		UserID, Balance, Payments, Entries, Transitions, EventSeq int64
	}
	rows, err = pool.Query(ctx, `
		SELECT w.user_id, w.balance,
			(SELECT count(*) FROM payments p WHERE p.user_id = w.user_id AND p.status = 'succeeded' AND p.source = 'seed' AND p.hold = 0),
			(SELECT count(*) FROM entries e WHERE e.user_id = w.user_id),
			(SELECT count(*) FROM payment_transitions t WHERE t.user_id = w.user_id AND t.actor = 'financectl seed'
				AND t.to_status = 'succeeded' AND t.user_seq BETWEEN 1 AND w.event_seq),
			w.event_seq
		FROM wallets w ORDER BY w.user_id`)
	if err != nil {
		t.Fatal(err)
	}
	users, err := pgx.CollectRows(rows, pgx.RowToStructByPos[userRow])
	if err != nil {
		t.Fatal(err)
	}
	wantUsers := []userRow{
		{1001, 100000, 1, 1, 1, 1}, {1002, 100000, 1, 1, 1, 1}, {1003, 100000, 1, 1, 1, 1},
		{1004, 100000, 1, 1, 1, 1}, {1005, 100000, 1, 1, 1, 1},
		{3456, 2000, 2, 2, 2, 2},
	}
	if diff := cmp.Diff(wantUsers, users); diff != "" {
		t.Errorf("users (-want +got):\n%s", diff)
	}
	var keys []string
	if err := pool.QueryRow(ctx, `SELECT array_agg(idempotency_key ORDER BY user_id, id) FROM payments WHERE user_id BETWEEN 1001 AND 1005`).Scan(&keys); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"seed-1001", "seed-1002", "seed-1003", "seed-1004", "seed-1005"}, keys); diff != "" {
		t.Errorf("idempotency keys (-want +got):\n%s", diff)
	}
	checkBalancesAreSums(t, pool)

	// Twice changes nothing.
	got = run(t, env, "seed", "--demo")
	if got.code != exitOK {
		t.Fatalf("second seed --demo: exit %d, stderr:\n%s", got.code, got.stderr)
	}
	if want := "demo: merchants created 0, users created 0, skipped 6 (already exist)\n"; got.stdout != want {
		t.Errorf("second stdout = %q, want %q", got.stdout, want)
	}
	if diff := cmp.Diff(before, snapshot(t, pool)); diff != "" {
		t.Errorf("second seed --demo changed the data (-before +after):\n%s", diff)
	}
}

func TestSeedUsers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		pre           []string // seed arguments run first
		args          []string
		wantSummary   string // start of the last stdout line
		wantWallets   int64
		wantEntries   int64
		wantBalanceOf map[int64]int64
	}{
		{
			name:          "defaults",
			args:          []string{"--users", "25", "--batch", "10"},
			wantSummary:   "users: created 25, skipped 0 (already exist), ids 1000000..1000024, balance 100000",
			wantWallets:   25,
			wantEntries:   25,
			wantBalanceOf: map[int64]int64{1_000_000: 100_000, 1_000_024: 100_000},
		},
		{
			name:          "start id and balance",
			args:          []string{"--users", "3", "--start-id", "50", "--balance", "777"},
			wantSummary:   "users: created 3, skipped 0 (already exist), ids 50..52, balance 777",
			wantWallets:   3,
			wantEntries:   3,
			wantBalanceOf: map[int64]int64{50: 777, 52: 777},
		},
		{
			name:          "zero balance makes wallets without entries",
			args:          []string{"--users", "4", "--start-id", "1", "--balance", "0"},
			wantSummary:   "users: created 4, skipped 0 (already exist), ids 1..4, balance 0",
			wantWallets:   4,
			wantEntries:   0,
			wantBalanceOf: map[int64]int64{1: 0, 4: 0},
		},
		{
			name:          "existing users are skipped, not changed",
			pre:           []string{"--users", "10", "--start-id", "100", "--balance", "5"},
			args:          []string{"--users", "20", "--start-id", "95", "--balance", "9", "--batch", "7"},
			wantSummary:   "users: created 10, skipped 10 (already exist), ids 95..114, balance 9",
			wantWallets:   20,
			wantEntries:   20,
			wantBalanceOf: map[int64]int64{95: 9, 100: 5, 109: 5, 114: 9},
		},
		{
			name:          "run twice",
			pre:           []string{"--users", "30", "--start-id", "7"},
			args:          []string{"--users", "30", "--start-id", "7"},
			wantSummary:   "users: created 0, skipped 30 (already exist), ids 7..36, balance 100000",
			wantWallets:   30,
			wantEntries:   30,
			wantBalanceOf: map[int64]int64{7: 100_000},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			url := pgtest.NewDB(t)
			pool := openPool(t, url)
			env := map[string]string{"DATABASE_URL": url}
			if tt.pre != nil {
				if got := run(t, env, append([]string{"seed"}, tt.pre...)...); got.code != exitOK {
					t.Fatalf("pre seed: exit %d, stderr:\n%s", got.code, got.stderr)
				}
			}
			before := snapshot(t, pool)
			got := run(t, env, append([]string{"seed"}, tt.args...)...)
			if got.code != exitOK {
				t.Fatalf("seed: exit %d, stderr:\n%s", got.code, got.stderr)
			}
			lines := strings.Split(strings.TrimSpace(got.stdout), "\n")
			if last := lines[len(lines)-1]; !strings.HasPrefix(last, tt.wantSummary) {
				t.Errorf("summary = %q, want prefix %q", last, tt.wantSummary)
			}
			if !strings.HasPrefix(got.stderr, "users ") {
				t.Errorf("no progress line on stderr (not a terminal: plain lines):\n%s", got.stderr)
			}

			var wallets, entries int64
			if err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM wallets), (SELECT count(*) FROM entries)`).Scan(&wallets, &entries); err != nil {
				t.Fatal(err)
			}
			if wallets != tt.wantWallets || entries != tt.wantEntries {
				t.Errorf("wallets %d entries %d, want %d and %d", wallets, entries, tt.wantWallets, tt.wantEntries)
			}
			for user, want := range tt.wantBalanceOf {
				var b int64
				if err := pool.QueryRow(ctx, `SELECT balance FROM wallets WHERE user_id = $1`, user).Scan(&b); err != nil {
					t.Fatalf("user %d: %v", user, err)
				}
				if b != want {
					t.Errorf("user %d balance = %d, want %d", user, b, want)
				}
			}
			// Every entry is the user's seed payment, for the seeded amount, from Pleo.
			var bad int64
			if err := pool.QueryRow(ctx, `
				SELECT count(*) FROM entries e JOIN payments p ON p.id = e.payment_id
				JOIN payment_transitions t ON t.payment_id = p.id
				WHERE NOT (p.idempotency_key = 'seed-' || e.user_id AND p.source = 'seed' AND p.status = 'succeeded'
					AND p.merchant_id = 1 AND e.merchant_id = 1 AND p.amount = e.amount
					AND t.actor = 'financectl seed' AND t.user_seq = 1 AND t.to_status = 'succeeded')`).Scan(&bad); err != nil {
				t.Fatal(err)
			}
			if bad != 0 {
				t.Errorf("%d entries are not a proper seed payment", bad)
			}
			var pleo string
			if err := pool.QueryRow(ctx, `SELECT name FROM merchants WHERE id = 1`).Scan(&pleo); err != nil || pleo != "Pleo" {
				t.Errorf("merchant 1 = %q, %v; want Pleo", pleo, err)
			}
			checkBalancesAreSums(t, pool)

			// Existing users kept every row as it was.
			after := snapshot(t, pool)
			for table, rows := range before {
				for _, r := range rows {
					if !contains(after[table], r) {
						t.Errorf("%s row %v changed or vanished", table, r)
					}
				}
			}
		})
	}
}

func contains(rows []string, r string) bool {
	for _, x := range rows {
		if x == r {
			return true
		}
	}
	return false
}

// checkBalancesAreSums fails t unless every wallet's balance is the sum of its
// entries and nothing is held.
func checkBalancesAreSums(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	rows, err := pool.Query(context.Background(), `
		SELECT w.user_id::text || ': balance ' || w.balance || ', entries ' || coalesce(sum(e.amount), 0) || ', held ' || w.held
		FROM wallets w LEFT JOIN entries e ON e.user_id = w.user_id
		GROUP BY w.user_id
		HAVING w.balance <> coalesce(sum(e.amount), 0) OR w.held <> 0`)
	if err != nil {
		t.Fatal(err)
	}
	bad, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bad {
		t.Errorf("wallet %s", b)
	}
}

// snapshot returns every row of the seeded tables as text, by table.
func snapshot(t *testing.T, pool *pgxpool.Pool) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, table := range []string{"merchants", "wallets", "payments", "entries", "payment_transitions"} {
		rows, err := pool.Query(context.Background(), "SELECT t::text FROM "+table+" t ORDER BY 1")
		if err != nil {
			t.Fatal(err)
		}
		out[table], err = pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// TestSeedHistoryVerifies seeds users with 20 payments each, as the read
// benchmarks do, and requires financectl verify to be clean after it.
func TestSeedHistoryVerifies(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDB(t)
	env := map[string]string{"DATABASE_URL": url}
	got := run(t, env, "seed", "--users", "12", "--payments-per-user", "20", "--batch", "5")
	if got.code != exitOK {
		t.Fatalf("seed: exit %d, stderr:\n%s", got.code, got.stderr)
	}
	if want := "users: created 12, skipped 0 (already exist), ids 1000000..1000011, balance 100000, 240 settled payments"; !strings.HasPrefix(got.stdout, want) {
		t.Errorf("stdout = %q, want prefix %q", got.stdout, want)
	}
	if got := run(t, env, "verify", "--no-statement"); got.code != exitOK {
		t.Errorf("verify after seed: exit %d, stdout:\n%s\nstderr:\n%s", got.code, got.stdout, got.stderr)
	}
}
