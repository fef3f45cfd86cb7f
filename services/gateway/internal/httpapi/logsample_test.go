package httpapi_test

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/finsvc/finance/services/gateway/internal/httpapi"
	"github.com/finsvc/finance/services/gateway/internal/ratelimit"
)

// requestLines returns the "http request" lines in logs, by route.
func requestLines(t *testing.T, logs *syncBuffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if m["msg"] != "http request" {
			t.Errorf("a line that is not a request's: %v", m)
			continue
		}
		out = append(out, m)
	}
	return out
}

// TestLogSampling: with LOG_READ_SAMPLE=3 one in three successful reads is
// logged (marked "sample":3), while refused reads, unknown routes and
// writes are all logged, one line each.
func TestLogSampling(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	e := newEnvWith(t, logger, func(c *httpapi.Config) { c.Log = httpapi.LogPolicy{ReadSample: 3, Slow: time.Hour} })
	tok := token(t, 1, false)
	for range 9 {
		if w := e.do(req{method: http.MethodGet, path: "/v1/users/1/feed", token: tok}); w.Code != http.StatusOK {
			t.Fatalf("feed = %d", w.Code)
		}
	}
	for _, r := range []req{
		{method: http.MethodGet, path: "/v1/users/2/feed", token: tok},         // 403
		{method: http.MethodGet, path: "/v1/users/1/feed"},                     // 401
		{method: http.MethodGet, path: "/no/such/route", token: tok},           // 404
		{method: http.MethodPost, path: "/v1/payments", token: tok},            // 415: a write
		{method: http.MethodGet, path: "/v1/users/x/feed", token: tok},         // 400
		{method: http.MethodGet, path: "/v1/users/1/feed?limit=0", token: tok}, // 400
	} {
		if w := e.do(r); w.Code < 400 {
			t.Fatalf("%s %s = %d, want an error", r.method, r.path, w.Code)
		}
	}
	reads, others := 0, 0
	for _, m := range requestLines(t, &logs) {
		if m["status"] == float64(200) {
			reads++
			if m["sample"] != float64(3) {
				t.Errorf("a sampled line without \"sample\":3: %v", m)
			}
			continue
		}
		others++
		if _, ok := m["sample"]; ok {
			t.Errorf("an error line marked as sampled: %v", m)
		}
	}
	if reads != 3 || others != 6 {
		t.Errorf("%d read lines (want 3 of 9) and %d others (want all 6):\n%s", reads, others, logs.String())
	}
}

// TestLogSamplingKeepsSlowAndEvery: LOG_READ_SAMPLE=1 logs every read; a
// read slower than the threshold is logged whatever the sample.
func TestLogSamplingKeepsSlowAndEvery(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		policy httpapi.LogPolicy
	}{
		{"every read", httpapi.LogPolicy{ReadSample: 1, Slow: time.Hour}},
		{"slow reads", httpapi.LogPolicy{ReadSample: 1000, Slow: time.Nanosecond}},
	} {
		var logs syncBuffer
		logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
		e := newEnvWith(t, logger, func(c *httpapi.Config) { c.Log = tc.policy })
		tok := token(t, 1, false)
		for range 4 {
			e.do(req{method: http.MethodGet, path: "/v1/users/1/feed", token: tok})
		}
		lines := requestLines(t, &logs)
		if len(lines) != 4 {
			t.Errorf("%s: %d lines for 4 reads, want 4", tc.name, len(lines))
		}
		for _, m := range lines {
			if _, ok := m["sample"]; ok {
				t.Errorf("%s: marked as sampled: %v", tc.name, m)
			}
		}
	}
}

// TestLogSamplingOf429: refusals by a rate limit are sampled like reads, so
// a client hammering the gateway cannot flood its log.
func TestLogSamplingOf429(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	e := newEnvWith(t, logger, func(c *httpapi.Config) {
		c.Log = httpapi.LogPolicy{ReadSample: 100, Slow: time.Hour}
		c.Limits = httpapi.Limits{User: ratelimit.Policy{Rate: 0.001, Burst: 1}, MaxKeys: 10}
	})
	tok := token(t, 1, false)
	codes := map[int]int{}
	for range 50 {
		codes[e.do(req{method: http.MethodGet, path: "/v1/users/1/feed", token: tok}).Code]++
	}
	if codes[200] != 1 || codes[429] != 49 {
		t.Fatalf("answers %v, want one 200 and 49 429s", codes)
	}
	if lines := requestLines(t, &logs); len(lines) != 1 {
		t.Errorf("%d lines for 50 sampled requests at 1 in 100, want 1:\n%s", len(lines), logs.String())
	}
}

// TestLogSamplingOfRefusals: 4xx answers are logged in full up to
// RefusalsPerSecond a second, then sampled like reads, so a client sending
// bad requests cannot flood the log either.
func TestLogSamplingOfRefusals(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	e := newEnvWith(t, logger, func(c *httpapi.Config) {
		c.Log = httpapi.LogPolicy{ReadSample: 100, RefusalsPerSecond: 1, Slow: time.Hour}
	})
	start := time.Now()
	for range 50 {
		if w := e.do(req{method: http.MethodGet, path: "/v1/users/1/feed"}); w.Code != http.StatusUnauthorized {
			t.Fatalf("feed without a token = %d, want 401", w.Code)
		}
	}
	elapsed := time.Since(start)
	full, sampled := 0, 0
	for _, m := range requestLines(t, &logs) {
		if m["sample"] == float64(100) {
			sampled++
		} else {
			full++
		}
	}
	// One full line a second (the budget refills while the requests run),
	// then the first of the sampled ones.
	if maxFull := 1 + int(elapsed.Seconds()); full < 1 || full > maxFull || sampled != 1 {
		t.Errorf("%d full and %d sampled lines for 50 refusals in %v; want 1..%d full and 1 sampled:\n%s",
			full, sampled, elapsed, maxFull, logs.String())
	}
}
