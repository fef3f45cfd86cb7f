package console

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/finsvc/finance/pkg/auth"
	"github.com/finsvc/finance/pkg/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// seedLoad writes payments and their transitions as a pipeline at that many
// payments per second would have them: `open` payments accepted or
// processing, and perSecond × Window payments, three transitions each
// (accepted, processing, succeeded), all inside the rates' window.
func seedLoad(tb testing.TB, pool *pgxpool.Pool, open, inWindow int) {
	tb.Helper()
	ctx := context.Background()
	for _, s := range []string{
		`INSERT INTO merchants (id, name) VALUES (1, 'Shop')`,
		`INSERT INTO wallets (user_id, balance) VALUES (1, 0)`,
		fmt.Sprintf(`INSERT INTO payments (id, user_id, merchant_id, amount, status, idempotency_key, request_hash)
			SELECT g, 1, 1, 1, CASE WHEN g <= %d THEN 'accepted' ELSE 'succeeded' END, 'k' || g, 'h'
			FROM generate_series(1, %d) g`, open, open+inWindow),
		fmt.Sprintf(`INSERT INTO payment_transitions (payment_id, user_id, user_seq, from_status, to_status, actor)
			SELECT p, 1, 3 * p + s, '', (ARRAY['accepted', 'processing', 'succeeded'])[s + 1], 'bench'
			FROM generate_series(%d, %d) p, generate_series(0, 2) s`, open+1, open+inWindow),
		`ANALYZE payments; ANALYZE payment_transitions`,
	} {
		if _, err := pool.Exec(ctx, s); err != nil {
			tb.Fatalf("seed: %v\n%s", err, s)
		}
	}
}

// BenchmarkOverviewRefresh is what one refresh of the overview costs the
// gateway and the database: the one query (rates over the window among the
// newest transitions, the open payments' counts). It runs at most once per
// StatsTTL (2 s) however many operators poll. At L = 300/s the window holds
// 3,000 payments (9,000 transitions); capped is the most the query reads.
func BenchmarkOverviewRefresh(b *testing.B) {
	for _, c := range []struct {
		name           string
		open, inWindow int
	}{
		{"at_L300_backlog1000", 1000, 3000},
		{"capped_backlog10000", 10000, maxWindowRows / 3},
	} {
		b.Run(c.name, func(b *testing.B) {
			pool := pgtest.NewPool(b)
			seedLoad(b, pool, c.open, c.inWindow)
			s := newStats(pool, 300, 0)
			b.ReportAllocs()
			for b.Loop() {
				smp, err := s.read(context.Background())
				if err != nil {
					b.Fatal(err)
				}
				if smp.Backlog != int64(c.open) {
					b.Fatalf("backlog %d, want %d", smp.Backlog, c.open)
				}
			}
		})
	}
}

// BenchmarkOverviewFragment is one poll of GET /console/overview between
// refreshes: the cached numbers rendered with a full chart (150 samples).
func BenchmarkOverviewFragment(b *testing.B) {
	pool := pgtest.NewPool(b)
	seedLoad(b, pool, 1000, 3000)
	c, err := New(Config{Logger: slog.New(slog.DiscardHandler), Pool: pool,
		Verify: func(string) (auth.Principal, error) { return auth.Principal{}, nil }, RateLimit: 300})
	if err != nil {
		b.Fatal(err)
	}
	// A full chart's worth of samples, then a cache that does not expire.
	c.stats.ttl = 0
	for range historyLen {
		c.stats.get(context.Background())
	}
	c.stats.ttl = 1 << 62
	req := httptest.NewRequest(http.MethodGet, "/console/overview", nil)
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		c.OverviewFragment(w, req)
		if w.Code != http.StatusOK {
			b.Fatalf("status %d", w.Code)
		}
	}
}
