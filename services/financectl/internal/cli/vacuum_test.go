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
