package cli_test

import (
	"context"
	"strings"
	"testing"

	"github.com/finsvc/finance/pkg/pgtest"
	"github.com/finsvc/finance/pkg/testkit"
)

// TestVacuumClearsTheOutboxsDeadRows deletes published-like outbox rows, as
// the relay does, and wants financectl vacuum to leave none of them dead,
// and the statistics of an insert-only table analyzed.
func TestVacuumClearsTheOutboxsDeadRows(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDB(t)
	pool := openPool(t, url)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `
		INSERT INTO outbox (topic, key, payload) SELECT 'payments.requested', '\x01', '\x02' FROM generate_series(1, 2000);
		DELETE FROM outbox;`); err != nil {
		t.Fatal(err)
	}

	r := run(t, map[string]string{"DATABASE_URL": url}, "vacuum")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "vacuumed and analyzed the database in ") {
		t.Fatalf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	// The statistics arrive a moment after the vacuum ends.
	var vacuums, dead, analyzed int64
	defer func() {
		if t.Failed() {
			t.Logf("last seen: outbox %d vacuums, %d dead rows; entries analyzed %d times", vacuums, dead, analyzed)
		}
	}()
	testkit.Eventually(t, "the outbox vacuumed with no dead rows, and entries analyzed", func() bool {
		if err := pool.QueryRow(ctx, `SELECT vacuum_count, n_dead_tup FROM pg_stat_user_tables WHERE relname = 'outbox'`).
			Scan(&vacuums, &dead); err != nil {
			t.Fatal(err)
		}
		if err := pool.QueryRow(ctx, `SELECT analyze_count FROM pg_stat_user_tables WHERE relname = 'entries'`).
			Scan(&analyzed); err != nil {
			t.Fatal(err)
		}
		return vacuums >= 1 && dead == 0 && analyzed >= 1
	})
}

func TestVacuumRefusesBadInput(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"vacuum", "--watch", "-1s"}, {"vacuum", "outbox"}} {
		if r := run(t, nil, args...); r.code != 2 {
			t.Errorf("%v: exit %d, want 2; stderr %q", args, r.code, r.stderr)
		}
	}
}

// TestVacuumDueWorksOnlyWhereAutovacuumWould: --due (what --watch does
// every pass) vacuums and analyzes the outbox full of dead rows, analyzes
// a table with 100 new rows, and leaves alone the tables that did not
// change since their last vacuum and analyze.
func TestVacuumDueWorksOnlyWhereAutovacuumWould(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDB(t)
	pool := openPool(t, url)
	ctx := context.Background()
	if r := run(t, map[string]string{"DATABASE_URL": url}, "vacuum"); r.code != 0 { // every table vacuumed and analyzed once
		t.Fatalf("vacuum: exit %d, stderr %q", r.code, r.stderr)
	}
	if _, err := pool.Exec(ctx, `
		INSERT INTO outbox (topic, key, payload) SELECT 'payments.requested', '\x01', '\x02' FROM generate_series(1, 2000);
		DELETE FROM outbox;
		INSERT INTO merchants (id, name) SELECT g, 'm' || g FROM generate_series(1, 100) g;`); err != nil {
		t.Fatal(err)
	}
	// The statistics that --due reads arrive a moment after the writes.
	testkit.Eventually(t, "the writes counted in pg_stat_user_tables", func() bool {
		var dead, changed int64
		if err := pool.QueryRow(ctx, `SELECT (SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'outbox'),
			(SELECT n_mod_since_analyze FROM pg_stat_user_tables WHERE relname = 'merchants')`).Scan(&dead, &changed); err != nil {
			t.Fatal(err)
		}
		return dead == 2000 && changed == 100
	})
	r := run(t, map[string]string{"DATABASE_URL": url}, "vacuum", "--due")
	if r.code != 0 {
		t.Fatalf("vacuum --due: exit %d, stderr %q", r.code, r.stderr)
	}
	// merchants: 100 rows changed since its analyze (> 50), but fewer
	// inserted than a vacuum waits for (1,000).
	want := "vacuumed public.outbox; analyzed public.merchants, public.outbox; in "
	if !strings.HasPrefix(r.stdout, want) {
		t.Errorf("vacuum --due said %q, want it to start %q", r.stdout, want)
	}
	if strings.Contains(r.stdout, "public.wallets") || strings.Contains(r.stdout, "public.entries") {
		t.Errorf("vacuum --due worked on tables that did not change: %q", r.stdout)
	}
}
