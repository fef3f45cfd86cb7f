package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/finsvc/finance/pkg/pgtest"
	"github.com/finsvc/finance/pkg/testkit"
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
	srv := testkit.StartServer(t, run, nil, env)
	addr := srv.Addr
	var sawWarning, sawConfig bool
	for _, rec := range srv.Log {
		if rec["msg"] == "starting" {
			cfg, _ := rec["config"].(map[string]any)
			pg, _ := cfg["postgres"].(map[string]any)
			au, _ := cfg["auth"].(map[string]any)
			sawConfig = au["jwt_secret"] == "REDACTED" && pg["max_conns"] == float64(20)
		}
		if msg, _ := rec["msg"].(string); rec["level"] == "WARN" && strings.Contains(msg, "dev secret") {
			sawWarning = true
		}
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

	if err := srv.Stop(); err != nil {
		t.Errorf("run after shutdown: %v", err)
	}
}

func TestRunRefusesToStartWithoutJWKS(t *testing.T) {
	t.Parallel()
	err := run(context.Background(), nil, getenv(map[string]string{}), io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "AUTH_JWKS_URL is not set") {
		t.Errorf("run = %v, want an AUTH_JWKS_URL error", err)
	}
}

// GATEWAY_CONSOLE=false takes the operator console's routes away (404);
// by default /console is there and asks an operator to sign in (401).
func TestRunConsoleSwitch(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		setting string
		want    int
	}{{"", http.StatusUnauthorized}, {"false", http.StatusNotFound}} {
		t.Run("GATEWAY_CONSOLE="+tt.setting, func(t *testing.T) {
			t.Parallel()
			env := map[string]string{
				"DATABASE_URL":     pgtest.NewDB(t),
				"HTTP_ADDR":        "127.0.0.1:0",
				"FINANCE_DEV_MODE": "true",
				"GATEWAY_CONSOLE":  tt.setting,
			}
			srv := testkit.StartServer(t, run, nil, env)
			resp, err := http.Get("http://" + srv.Addr + "/console")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("GET /console = %d, want %d", resp.StatusCode, tt.want)
			}
			if err := srv.Stop(); err != nil {
				t.Errorf("run after shutdown: %v", err)
			}
		})
	}
}
