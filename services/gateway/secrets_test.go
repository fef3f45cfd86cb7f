package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/finsvc/finance/pkg/auth"
	"github.com/finsvc/finance/pkg/pgtest"
	"github.com/finsvc/finance/pkg/postgres"
	"github.com/finsvc/finance/pkg/testkit"
)

// lockedBuffer is the gateway's stdout: every log line it writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestSecretsNeverLogged runs the whole gateway (run, as main does) at
// debug level with every read logged, through a short flow that handles
// every kind of secret it knows: the JWT signing secret, bearer tokens
// (valid, for another key, malformed), webhook endpoint secrets (created
// and rotated), and a database password in DATABASE_URL (trust
// authentication ignores it, so the test database still answers). Then it
// greps every line the gateway wrote, start-up and shutdown included, for
// each secret, and for the distinctive part of each.
func TestSecretsNeverLogged(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const (
		jwtSecret  = "h15-jwt-secret-0123456789abcdef-XYZ"
		dbPassword = "h15-db-Pa55word-qwerty"
	)
	dbURL := pgtest.NewDB(t)
	owner, err := postgres.Connect(ctx, dbURL, 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(owner.Close)
	for _, sql := range []string{
		`INSERT INTO merchants (id, name) VALUES (4593, 'Amazon')`,
		`INSERT INTO wallets (user_id, balance) VALUES (3456, 10000)`,
	} {
		if _, err := owner.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword("finance_gateway", dbPassword)

	out := &lockedBuffer{}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	env := map[string]string{
		"DATABASE_URL":     u.String(),
		"HTTP_ADDR":        "127.0.0.1:0",
		"FINANCE_DEV_MODE": "true",
		"AUTH_JWT_SECRET":  jwtSecret,
		"LOG_LEVEL":        "debug",
		"LOG_READ_SAMPLE":  "1",
		// Every refusal's line too, however fast the test sends them.
		"LOG_REFUSALS_PER_SECOND": "0",
	}
	go func() { done <- run(runCtx, nil, getenv(env), out, out) }()
	t.Cleanup(func() { stop() })
	var addr string
	testkit.Eventually(t, "the gateway listens", func() bool {
		for _, line := range strings.Split(out.String(), "\n") {
			var rec map[string]any
			if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == "http server listening" {
				addr, _ = rec["addr"].(string)
			}
		}
		return addr != ""
	})

	tok, err := auth.Mint([]byte(jwtSecret), 3456, false, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	admin, err := auth.Mint([]byte(jwtSecret), 1, true, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	forged, err := auth.Mint([]byte("another-secret-0123456789abcdef-forged"), 3456, true, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	do := func(method, path, token, body string, want int) []byte {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		if method == http.MethodPost && path == "/v1/payments" {
			req.Header.Set("Idempotency-Key", "h15-key-1")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		if resp.StatusCode != want {
			t.Fatalf("%s %s: %d, want %d: %s", method, path, resp.StatusCode, want, b.String())
		}
		return b.Bytes()
	}
	secretOf := func(body []byte) string {
		t.Helper()
		var ep struct {
			ID     string `json:"id"`
			Secret string `json:"secret"`
		}
		if err := json.Unmarshal(body, &ep); err != nil || !strings.HasPrefix(ep.Secret, "whsec_") {
			t.Fatalf("endpoint %s: %v", body, err)
		}
		return ep.Secret
	}

	do(http.MethodPost, "/v1/payments", tok, `{"user_id":3456,"merchant_id":4593,"amount":-500}`, http.StatusAccepted)
	do(http.MethodGet, "/v1/users/3456/feed", tok, "", http.StatusOK)
	do(http.MethodGet, "/v1/users/3456/balance", forged, "", http.StatusUnauthorized)
	do(http.MethodGet, "/v1/users/3456/balance", tok+"x", "", http.StatusUnauthorized)
	do(http.MethodGet, "/v1/users/3456/balance", strings.Replace(tok, ".", "", 1), "", http.StatusUnauthorized)
	created := do(http.MethodPost, "/v1/webhooks/endpoints", tok, `{"url":"https://93.184.215.14/hook"}`, http.StatusCreated)
	whsec := secretOf(created)
	var ep struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(created, &ep)
	rotated := secretOf(do(http.MethodPost, "/v1/webhooks/endpoints/"+ep.ID+"/rotate-secret", admin, "", http.StatusOK))
	do(http.MethodGet, "/v1/webhooks/endpoints/"+ep.ID, tok, "", http.StatusOK)
	do(http.MethodPost, "/v1/admin/dlq/replay", tok, `{}`, http.StatusForbidden)

	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run: %v", err)
		}
	case <-time.After(testkit.DefaultWait):
		t.Fatal("the gateway did not stop")
	}

	logs := out.String()
	lines := strings.Split(strings.TrimSpace(logs), "\n")
	// The flow was logged: start-up, each request, the admin audit.
	for _, want := range []string{`"msg":"starting"`, `"/v1/payments"`, `"status":401`, `"msg":"admin action"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("no log line has %s; the test would prove nothing", want)
		}
	}
	secrets := map[string]string{
		"JWT secret":               jwtSecret,
		"database password":        dbPassword,
		"bearer token":             tok,
		"admin bearer token":       admin,
		"forged bearer token":      forged,
		"webhook secret":           whsec,
		"rotated webhook secret":   rotated,
		"webhook secret's key":     strings.TrimPrefix(whsec, "whsec_"),
		"rotated webhook's key":    strings.TrimPrefix(rotated, "whsec_"),
		"bearer token's signature": tok[strings.LastIndex(tok, ".")+1:],
	}
	for name, s := range secrets {
		for i, line := range lines {
			if strings.Contains(line, s) {
				t.Errorf("log line %d has the %s: %s", i+1, name, line)
			}
		}
	}
	t.Logf("%d log lines checked for %d secrets", len(lines), len(secrets))
}
