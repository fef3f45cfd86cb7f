package httpapi_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/finsvc/finance/pkg/auth"
	"github.com/finsvc/finance/pkg/obs"
	"github.com/finsvc/finance/pkg/pgtest"
	"github.com/finsvc/finance/services/legacy/internal/dbtest"
	"github.com/finsvc/finance/services/legacy/internal/httpapi"
	"github.com/finsvc/finance/services/legacy/internal/processor"
	"github.com/finsvc/finance/services/legacy/internal/store"
)

// BenchmarkFeed serves the as-is GET /payment_feed through this service's
// whole handler against a real PostgreSQL with 1,000 users of 20 payments
// each, rotating over the users, as the gateway's BenchmarkFeed does
// (services/gateway/internal/httpapi): ns/op, B/op, allocs/op, and the CPU
// of the test process and of the database's backends per request.
//
//	go test ./services/legacy/internal/httpapi -run '^$' -bench BenchmarkFeed -benchtime 5000x -count 3
func BenchmarkFeed(b *testing.B) {
	const users = 1000
	ctx := context.Background()
	pool := dbtest.NewPool(b)
	for _, sql := range []string{
		`INSERT INTO providers (id, name) VALUES (4593, 'Apple')`,
		`INSERT INTO payments (id, amount, user_id, merchant_id) SELECT g, 1 + g % 50, 1 + g % 1000, 4593 FROM generate_series(1, 20000) g`,
		`VACUUM (ANALYZE) providers, payments`,
	} {
		if _, err := pool.Exec(ctx, sql); err != nil {
			b.Fatalf("%s: %v", sql, err)
		}
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn}))
	h := httpapi.New(logger, store.New(pool), processor.New("http://127.0.0.1:1", time.Second), auth.NewVerifier(secret), obs.NewRegistry())
	tokens := make([]string, users)
	for i := range tokens {
		tok, err := auth.Mint(secret, int64(i+1), false, time.Hour, time.Now())
		if err != nil {
			b.Fatal(err)
		}
		tokens[i] = tok
	}
	b.ReportAllocs()
	cpu := pgtest.StartCPU(b, pool)
	i := 0
	for b.Loop() {
		u := i % users
		i++
		r := httptest.NewRequest(http.MethodGet, "/payment_feed?user_id="+strconv.Itoa(u+1), nil)
		r.Header.Set("Authorization", "Bearer "+tokens[u])
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			b.Fatalf("user %d: %d %s", u+1, w.Code, w.Body.String())
		}
	}
	cpu.Report(b, i, "op")
}
