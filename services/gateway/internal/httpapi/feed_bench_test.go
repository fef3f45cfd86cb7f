package httpapi_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/finsvc/finance/pkg/auth"
	"github.com/finsvc/finance/pkg/obs"
	"github.com/finsvc/finance/pkg/procstat"
	"github.com/finsvc/finance/services/gateway/internal/cache"
	"github.com/finsvc/finance/services/gateway/internal/httpapi"
	"github.com/finsvc/finance/services/gateway/internal/store"
)

// BenchmarkFeed serves GET /v1/users/{id}/feed through the gateway's whole
// handler (JWT, gin, JSON) against a real PostgreSQL with 1,000 users of 20
// settled payments each, rotating over the users: "full" reads the page
// every time, "if-none-match" sends the ETag of the user's page and gets
// 304. Besides ns/op, B/op and allocs/op it reports the CPU the test
// process (gateway side, pgx included) and the database's backends spent
// per request. The balance-* cases are GET /v1/users/{id}/balance, and the
// cache-hit cases go through a gateway whose read cache holds every user's
// page and balance. services/legacy's BenchmarkFeed is its as-is counterpart:
//
//	go test ./services/gateway/internal/httpapi -run '^$' -bench BenchmarkFeed -benchtime 5000x -count 3
func BenchmarkFeed(b *testing.B) {
	const users, perUser = 1000, 20
	e := newEnv(b)
	for _, sql := range []string{
		`INSERT INTO wallets (user_id, balance, event_seq) SELECT g, 0, 20 FROM generate_series(1, 1000) g`,
		`INSERT INTO payments (id, user_id, merchant_id, amount, status, idempotency_key, request_hash, source)
		 SELECT g, 1 + g % 1000, 4593, 1 + g % 50, 'succeeded', 'k' || g, '', 'seed' FROM generate_series(1, 20000) g`,
		`INSERT INTO entries (user_id, payment_id, merchant_id, amount, occurred_at)
		 SELECT user_id, id, merchant_id, amount, created_at FROM payments ORDER BY id`,
		`UPDATE wallets w SET balance = s.total FROM (SELECT user_id, sum(amount) AS total FROM entries GROUP BY user_id) s WHERE s.user_id = w.user_id`,
		`VACUUM (ANALYZE) wallets, payments, entries`,
	} {
		e.exec(sql)
	}
	tokens := make([]string, users)
	for i := range tokens {
		tokens[i] = token(b, int64(i+1), false)
	}
	// A second gateway over the same store with the read cache, large
	// enough for every user's page and balance.
	cached := httpapi.New(httpapi.Config{
		Logger: slog.New(slog.DiscardHandler), Store: store.New(e.pool), Verifier: auth.NewVerifier(testSecret),
		Registry: obs.NewRegistry(), Cache: cache.New(cache.Config{MaxBytes: 64 << 20, MaxEntries: 10_000}),
	})
	get := func(h http.Handler, doc string, u int, inm string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodGet, "/v1/users/"+strconv.Itoa(u+1)+"/"+doc, nil)
		r.Header.Set("Authorization", "Bearer "+tokens[u])
		if inm != "" {
			r.Header.Set("If-None-Match", inm)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	etags := map[string][]string{"feed": make([]string, users), "balance": make([]string, users)}
	for doc, tags := range etags {
		for u := range tags {
			w := get(cached, doc, u, "") // also warms the cache
			if w.Code != http.StatusOK {
				b.Fatalf("user %d: %d %s", u+1, w.Code, w.Body.String())
			}
			tags[u] = w.Header().Get("ETag")
		}
	}
	// "full": no cache (a miss costs the same: the wallet's primary-key
	// read, then the page); "cache-hit": the wallet read, then the cached
	// bytes; "if-none-match": the wallet read, then 304.
	for _, bc := range []struct {
		name, doc string
		h         http.Handler
		inm       bool
		want      int
	}{
		{"full", "feed", e.h, false, http.StatusOK},
		{"cache-hit", "feed", cached, false, http.StatusOK},
		{"if-none-match", "feed", e.h, true, http.StatusNotModified},
		{"balance-full", "balance", e.h, false, http.StatusOK},
		{"balance-cache-hit", "balance", cached, false, http.StatusOK},
		{"balance-if-none-match", "balance", e.h, true, http.StatusNotModified},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			cpu := startCPU(b, e.pool)
			i := 0
			for b.Loop() {
				u := i % users
				i++
				inm := ""
				if bc.inm {
					inm = etags[bc.doc][u]
				}
				if w := get(bc.h, bc.doc, u, inm); w.Code != bc.want {
					b.Fatalf("user %d: status %d, want %d", u+1, w.Code, bc.want)
				}
			}
			cpu.report(b, i)
		})
	}
}

// cpuMeter measures the CPU this process and the database's backends use.
type cpuMeter struct {
	self     int
	backends []int
	before   [2]map[int]float64
}

func startCPU(tb testing.TB, pool *pgxpool.Pool) *cpuMeter {
	tb.Helper()
	rows, _ := pool.Query(context.Background(), `SELECT pid FROM pg_stat_activity WHERE datname = current_database()`)
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		tb.Fatal(err)
	}
	m := &cpuMeter{self: os.Getpid()}
	for _, p := range pids {
		m.backends = append(m.backends, int(p))
	}
	m.before = [2]map[int]float64{procstat.PIDs(procstat.Dir, m.self), procstat.PIDs(procstat.Dir, m.backends...)}
	return m
}

func (m *cpuMeter) report(b *testing.B, n int) {
	self := procstat.Used(m.before[0], procstat.PIDs(procstat.Dir, m.self))
	db := procstat.Used(m.before[1], procstat.PIDs(procstat.Dir, m.backends...))
	b.ReportMetric(self*1e6/float64(n), "cpu-µs/op")
	b.ReportMetric(db*1e6/float64(n), "db-cpu-µs/op")
}
