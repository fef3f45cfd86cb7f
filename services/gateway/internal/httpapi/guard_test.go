package httpapi_test

import (
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/finsvc/finance/pkg/obs"
	"github.com/finsvc/finance/pkg/testkit"
	"github.com/finsvc/finance/services/gateway/internal/abuse"
	"github.com/finsvc/finance/services/gateway/internal/httpapi"
	"github.com/finsvc/finance/services/gateway/internal/ratelimit"
)

// TestBlockedAddress: an address whose requests keep being refused (bad
// tokens, unknown routes, another user's data: any 4xx) is blocked once it
// overdraws its budget: then even its valid requests get 429 "blocked" with
// Retry-After and the RateLimit fields, and its connection is closed (a
// recorder's: over a real connection it is held, internal/abuse's tests).
// Served requests cost no budget, another address is served all along, and
// the block ends on time.
func TestBlockedAddress(t *testing.T) {
	t.Parallel()
	clock := testkit.NewClock(time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC))
	policy := abuse.Policy{
		Refusals: ratelimit.Policy{Rate: 1, Burst: 4},
		Block:    10 * time.Second, MaxBlock: time.Minute, Probation: time.Minute,
	}
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	guard := abuse.New(policy, 10, clock.Now, obs.NewRegistry())
	e := newEnvWith(t, logger, func(c *httpapi.Config) { c.Guard = guard })
	e.h = checked(t, guard.Handler(e.h)) // as run.go serves it
	const hostile, other = "203.0.113.7:1", "203.0.113.8:1"
	own := token(t, 1, false)

	for range 10 { // served requests never count
		if w := e.from(hostile, "/v1/users/1/balance", own); w.Code != http.StatusOK {
			t.Fatalf("own balance = %d: %s", w.Code, w.Body)
		}
	}
	for i, path := range []string{"/v1/users/1/feed", "/no/such/route", "/v1/users/2/feed", "/v1/users/1/feed", "/v1/users/1/feed"} {
		tok := "forged"
		if path == "/v1/users/2/feed" {
			tok = own // another user's feed: 403
		}
		if w := e.from(hostile, path, tok); w.Code/100 != 4 || w.Code == http.StatusTooManyRequests {
			t.Fatalf("refusal %d (%s) = %d, want its own 4xx: %s", i+1, path, w.Code, w.Body)
		}
	}
	w := e.from(hostile, "/v1/users/1/balance", own)
	wantProblem(t, w, http.StatusTooManyRequests, "blocked")
	for header, want := range map[string]string{
		"Retry-After": "10", "Connection": "close",
		"RateLimit-Policy": `"blocked";q=4;w=4`, "RateLimit": `"blocked";r=0;t=10`,
	} {
		if got := w.Header().Get(header); got != want {
			t.Errorf("blocked: %s = %q, want %q", header, got, want)
		}
	}
	if w := e.from(other, "/v1/users/1/balance", own); w.Code != http.StatusOK {
		t.Errorf("another address while one is blocked: %d: %s", w.Code, w.Body)
	}
	clock.Add(10 * time.Second)
	if w := e.from(hostile, "/v1/users/1/balance", own); w.Code != http.StatusOK {
		t.Errorf("after the block: %d: %s", w.Code, w.Body)
	}
}
