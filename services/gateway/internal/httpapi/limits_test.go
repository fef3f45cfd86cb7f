package httpapi_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/finsvc/finance/pkg/auth"
	"github.com/finsvc/finance/pkg/envconfig"
	"github.com/finsvc/finance/pkg/obs"
	"github.com/finsvc/finance/pkg/pgtest"
	"github.com/finsvc/finance/pkg/postgres"
	"github.com/finsvc/finance/pkg/problem"
	"github.com/finsvc/finance/pkg/testkit"
	"github.com/finsvc/finance/services/gateway/internal/httpapi"
	"github.com/finsvc/finance/services/gateway/internal/ratelimit"
	"github.com/finsvc/finance/services/gateway/internal/store"
)

// newLimitedEnv is newEnv with limits and a fake clock for them.
func newLimitedEnv(t *testing.T, l httpapi.Limits) (*env, *testkit.Clock) {
	t.Helper()
	clock := testkit.NewClock(time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC))
	l.Now = clock.Now
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	return newEnvWith(t, logger, func(c *httpapi.Config) { c.Limits = l }), clock
}

// newEnvWith is a gateway over its own database, with wallets 1 and 2 and
// the Config that set makes; it accepts no payments.
func newEnvWith(t *testing.T, logger *slog.Logger, set func(*httpapi.Config)) *env {
	t.Helper()
	pool, err := postgres.Connect(context.Background(), pgtest.NewDB(t), 4)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(pool.Close)
	cfg := httpapi.Config{Logger: logger, Store: store.New(pool), Verifier: auth.NewVerifier(testSecret), Registry: obs.NewRegistry()}
	set(&cfg)
	e := &env{t: t, pool: pool, h: checked(t, httpapi.New(cfg))}
	e.wallet(1, 100)
	e.wallet(2, 100)
	return e
}

// from sends a GET of path with tok (none when empty) from the peer addr.
func (e *env) from(addr, path, tok string) *httptest.ResponseRecorder {
	e.t.Helper()
	r := httptest.NewRequest(http.MethodGet, path, nil)
	r.RemoteAddr = addr
	if tok != "" {
		r.Header.Set("Authorization", "Bearer "+tok)
	}
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, r)
	return w
}

func wantHeaders(t *testing.T, w *httptest.ResponseRecorder, policy, state string) {
	t.Helper()
	if got := strings.Join(w.Header().Values("RateLimit-Policy"), ", "); got != policy {
		t.Errorf("RateLimit-Policy = %q, want %q", got, policy)
	}
	if got := strings.Join(w.Header().Values("RateLimit"), ", "); got != state {
		t.Errorf("RateLimit = %q, want %q", got, state)
	}
}

// TestRateLimitPerUser: a user over its limit gets 429 problem+json with an
// honest Retry-After and the RateLimit fields, while another user at the
// same moment is served; after Retry-After the user is served again.
func TestRateLimitPerUser(t *testing.T) {
	t.Parallel()
	e, clock := newLimitedEnv(t, httpapi.Limits{User: ratelimit.Policy{Rate: 1, Burst: 2}, MaxKeys: 10})
	const addr = "198.51.100.1:4000"
	tok1, tok2 := token(t, 1, false), token(t, 2, false)
	for i, state := range []string{`"user";r=1;t=1`, `"user";r=0;t=2`} {
		w := e.from(addr, "/v1/users/1/feed", tok1)
		if w.Code != http.StatusOK {
			t.Fatalf("request %d = %d, want 200: %s", i+1, w.Code, w.Body)
		}
		wantHeaders(t, w, `"user";q=2;w=2`, state)
	}
	w := e.from(addr, "/v1/users/1/feed", tok1)
	wantProblem(t, w, http.StatusTooManyRequests, "rate-limited")
	if got := w.Header().Get("Retry-After"); got != "1" {
		t.Errorf("Retry-After = %q, want 1", got)
	}
	wantHeaders(t, w, `"user";q=2;w=2`, `"user";r=0;t=2`)

	if w := e.from(addr, "/v1/users/2/feed", tok2); w.Code != http.StatusOK {
		t.Fatalf("user 2, while user 1 is limited = %d, want 200: %s", w.Code, w.Body)
	}
	// Retry-After is honest: a moment before it user 1 is still refused,
	// at it user 1 is served.
	clock.Add(time.Second - time.Millisecond)
	if w := e.from(addr, "/v1/users/1/feed", tok1); w.Code != http.StatusTooManyRequests {
		t.Fatalf("user 1 before Retry-After = %d, want 429", w.Code)
	}
	clock.Add(time.Millisecond)
	if w := e.from(addr, "/v1/users/1/feed", tok1); w.Code != http.StatusOK {
		t.Fatalf("user 1 after Retry-After = %d, want 200: %s", w.Code, w.Body)
	}
}

// TestRateLimitPerIPBeforeAuth: requests with bad tokens are counted per
// address before the token is checked: over the limit they get 429, not
// 401; another address is not affected; an IPv6 client's /64 is one
// address; the ops routes are not limited.
func TestRateLimitPerIPBeforeAuth(t *testing.T) {
	t.Parallel()
	e, _ := newLimitedEnv(t, httpapi.Limits{IP: ratelimit.Policy{Rate: 1, Burst: 2}, MaxKeys: 10})
	for _, tc := range []struct {
		addr, path, tok string
		want            int
	}{
		{"203.0.113.7:1", "/v1/users/1/feed", "forged", http.StatusUnauthorized},
		{"203.0.113.7:2", "/v1/users/1/feed", "", http.StatusUnauthorized},
		{"203.0.113.7:3", "/v1/users/1/feed", "forged", http.StatusTooManyRequests},
		{"203.0.113.7:3", "/no/such/route", "", http.StatusTooManyRequests},
		{"203.0.113.7:3", "/healthz", "", http.StatusOK},
		{"203.0.113.8:1", "/v1/users/1/feed", "forged", http.StatusUnauthorized},
		{"[2001:db8:0:1::1]:1", "/v1/users/1/feed", "forged", http.StatusUnauthorized},
		{"[2001:db8:0:1::2]:1", "/v1/users/1/feed", "forged", http.StatusUnauthorized},
		{"[2001:db8:0:1:ffff::3]:1", "/v1/users/1/feed", "forged", http.StatusTooManyRequests},
		{"[2001:db8:0:2::1]:1", "/v1/users/1/feed", "forged", http.StatusUnauthorized},
	} {
		w := e.from(tc.addr, tc.path, tc.tok)
		if w.Code != tc.want {
			t.Errorf("%s %s = %d, want %d: %s", tc.addr, tc.path, w.Code, tc.want, w.Body)
		}
		if tc.want == http.StatusTooManyRequests {
			wantProblem(t, w, http.StatusTooManyRequests, "rate-limited")
			if w.Header().Get("Retry-After") != "1" {
				t.Errorf("%s: Retry-After = %q", tc.addr, w.Header().Get("Retry-After"))
			}
		}
	}
}

// TestRateLimitBoth: with both limits on, a response shows both policies,
// and admin tokens have their own, higher limit.
func TestRateLimitBoth(t *testing.T) {
	t.Parallel()
	e, _ := newLimitedEnv(t, httpapi.Limits{
		IP:    ratelimit.Policy{Rate: 100, Burst: 100},
		User:  ratelimit.Policy{Rate: 1, Burst: 1},
		Admin: ratelimit.Policy{Rate: 1, Burst: 3}, MaxKeys: 10,
	})
	const addr = "198.51.100.9:1"
	w := e.from(addr, "/v1/users/1/feed", token(t, 1, false))
	wantHeaders(t, w, `"ip";q=100;w=1, "user";q=1;w=1`, `"ip";r=99;t=1, "user";r=0;t=1`)
	if w := e.from(addr, "/v1/users/1/feed", token(t, 1, false)); w.Code != http.StatusTooManyRequests {
		t.Fatalf("second user request = %d, want 429", w.Code)
	}
	admin := token(t, 7, true)
	for i := range 3 {
		if w := e.from(addr, "/v1/users/1/feed", admin); w.Code != http.StatusOK {
			t.Fatalf("admin request %d = %d, want 200: %s", i+1, w.Code, w.Body)
		}
	}
	w = e.from(addr, "/v1/users/1/feed", admin)
	wantProblem(t, w, http.StatusTooManyRequests, "rate-limited")
	wantHeaders(t, w, `"ip";q=100;w=1, "admin";q=3;w=3`, `"ip";r=94;t=1, "admin";r=0;t=3`)
}

// TestSizeCaps: through a real server, a header block over
// HTTP_MAX_HEADER_BYTES (but within what the server reads) answers 431
// problem+json, and a declared body over 64 KiB answers 413 before the
// token is even looked at; nothing reaches a handler.
func TestSizeCaps(t *testing.T) {
	t.Parallel()
	hs := envconfig.HTTPServer{MaxHeaderBytes: 2048}
	e, _ := newLimitedEnv(t, httpapi.Limits{MaxHeaderBytes: hs.MaxHeaderBytes})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := obs.NewServer(e.h, hs)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	base := "http://" + ln.Addr().String()

	do := func(r *http.Request) (*http.Response, problem.Details) {
		t.Helper()
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		rec := httptest.NewRecorder()
		rec.Code = resp.StatusCode
		for k, v := range resp.Header {
			rec.Header()[k] = v
		}
		_, _ = io.Copy(rec.Body, resp.Body)
		if resp.StatusCode < 400 {
			return resp, problem.Details{}
		}
		typ := map[int]string{431: "header-too-large", 413: "payload-too-large"}[resp.StatusCode]
		return resp, wantProblem(t, rec, resp.StatusCode, typ)
	}

	r, _ := http.NewRequest(http.MethodGet, base+"/v1/users/1/feed", nil)
	r.Header.Set("Authorization", "Bearer "+token(t, 1, false))
	r.Header.Set("X-Pad", strings.Repeat("a", 1000))
	if resp, _ := do(r); resp.StatusCode != http.StatusOK {
		t.Fatalf("1,000-byte header = %d, want 200", resp.StatusCode)
	}
	r.Header.Set("X-Pad", strings.Repeat("a", 3000))
	if resp, p := do(r); resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge || !strings.Contains(p.Detail, "at most 2048") {
		t.Fatalf("3,000-byte header = %d %+v, want 431 naming the cap", resp.StatusCode, p)
	}

	r, _ = http.NewRequest(http.MethodPost, base+"/v1/payments", strings.NewReader(strings.Repeat(" ", 70<<10)))
	r.Header.Set("Content-Type", "application/json")
	if resp, _ := do(r); resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("70 KiB body without a token = %d, want 413", resp.StatusCode)
	}
	if n := e.count(`SELECT count(*) FROM payments`); n != 0 {
		t.Errorf("%d payments written", n)
	}
}
