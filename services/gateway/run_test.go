package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/finsvc/finance/pkg/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// TestRunServesAndShutsDown starts the whole gateway on a free port, asks it
// whether it is ready, and stops it as SIGTERM would.
func TestRunServesAndShutsDown(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"DATABASE_URL":     pgtest.NewDB(t),
		"HTTP_ADDR":        "127.0.0.1:0",
		"FINANCE_DEV_MODE": "true",
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, nil, getenv(env), pw, io.Discard)
		pw.Close()
	}()

	var addr string
	var sawWarning, sawConfig bool
	lines := bufio.NewScanner(pr)
	for addr == "" && lines.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(lines.Bytes(), &rec); err != nil {
			t.Fatalf("log line is not JSON: %q", lines.Text())
		}
		switch rec["msg"] {
		case "starting":
			cfg, _ := rec["config"].(map[string]any)
			pg, _ := cfg["postgres"].(map[string]any)
			sawConfig = cfg["auth_jwt_secret"] == "REDACTED" && pg["max_conns"] == float64(20)
		case "http server listening":
			addr, _ = rec["addr"].(string)
		}
		if rec["level"] == "WARN" && strings.Contains(rec["msg"].(string), "dev secret") {
			sawWarning = true
		}
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	if addr == "" {
		t.Fatalf("gateway never listened: %v", <-done)
	}
	if !sawConfig || !sawWarning {
		t.Errorf("start-up logs: config logged redacted %v, dev-secret warning %v", sawConfig, sawWarning)
	}

	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/readyz = %d", resp.StatusCode)
	}
	resp, err = http.Get("http://" + addr + "/v1/users/1/feed")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("feed without token = %d, want 401", resp.StatusCode)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run after shutdown: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run did not return after its context ended")
	}
}

func TestRunRefusesToStartWithoutSecret(t *testing.T) {
	t.Parallel()
	err := run(context.Background(), nil, getenv(map[string]string{}), io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "AUTH_JWT_SECRET") {
		t.Errorf("run = %v, want an AUTH_JWT_SECRET error", err)
	}
}
