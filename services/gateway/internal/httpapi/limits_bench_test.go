package httpapi

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/finsvc/finance/pkg/auth"
	"github.com/finsvc/finance/pkg/obs"
	"github.com/finsvc/finance/services/gateway/internal/abuse"
	"github.com/finsvc/finance/services/gateway/internal/store"
)

// BenchmarkMiddleware is the CPU cost of one request through the gateway's
// middleware (observe with sampled logging, size checks, per-address
// limit, token check, per-user limit) to a handler that writes "ok", with
// the limits off and at their defaults, and with the address block
// (internal/abuse: its handler in front, the refusal count behind) at its
// defaults too, over 10,000 users' tokens from 100 addresses.
// docs/security.md reports it:
//
//	go test -run '^$' -bench BenchmarkMiddleware -benchmem ./services/gateway/internal/httpapi/
func BenchmarkMiddleware(b *testing.B) {
	secret := []byte("bench-secret-0123456789abcdefghijklmnop")
	const users, addrs = 10_000, 100
	reqs := make([]*http.Request, users)
	for i := range reqs {
		tok, err := auth.Mint(secret, int64(i+1), false, time.Hour, time.Now())
		if err != nil {
			b.Fatal(err)
		}
		r := httptest.NewRequest(http.MethodGet, "/bench", nil)
		r.Header.Set("Authorization", "Bearer "+tok)
		r.RemoteAddr = "10.0.0." + strconv.Itoa(i%addrs) + ":40000"
		reqs[i] = r
	}
	for _, bc := range []struct {
		name   string
		limits Limits
		block  abuse.Policy
	}{
		{"limits=off", Limits{}, abuse.Policy{}},
		{"limits=default", DefaultLimits, abuse.Policy{}},
		{"limits=default,block=default", DefaultLimits, abuse.DefaultPolicy},
	} {
		b.Run(bc.name, func(b *testing.B) {
			reg := obs.NewRegistry()
			guard := abuse.New(bc.block, DefaultLimits.MaxKeys, nil, reg)
			a := newAPI(Config{
				Logger:   slog.New(slog.NewJSONHandler(io.Discard, nil)),
				Store:    store.New(nil), // never reached
				Verifier: auth.NewVerifier(secret),
				Registry: reg,
				Limits:   bc.limits,
				Guard:    guard,
				Log:      LogPolicy{ReadSample: 10},
			})
			g := a.engine.Group("/", a.limitIP, a.authenticate, a.limitUser)
			g.GET("/bench", func(c *gin.Context) { c.String(http.StatusOK, "ok") })
			h := guard.Handler(a.engine)
			w := httptest.NewRecorder()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				w.Body.Reset()
				clear(w.Header())
				h.ServeHTTP(w, reqs[i%users])
			}
			b.StopTimer()
			if w.Code != http.StatusOK {
				b.Fatalf("status %d: %s", w.Code, w.Body)
			}
		})
	}
}
