package main

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/finsvc/finance/pkg/auth"
	"github.com/finsvc/finance/pkg/envconfig"
	"github.com/finsvc/finance/pkg/postgres"
	"github.com/finsvc/finance/services/gateway/internal/abuse"
	"github.com/finsvc/finance/services/gateway/internal/httpapi"
)

const goodSecret = "production-secret-0123456789abcdefgh"

// prodAuth is the token settings a production gateway needs.
var prodAuth = map[string]string{
	"AUTH_JWKS_URL": "https://idp.example/.well-known/jwks.json",
	"AUTH_ISSUER":   "https://idp.example/",
	"AUTH_AUDIENCE": "finance-api",
}

// with returns base plus the key-value pairs kv.
func with(base map[string]string, kv ...string) map[string]string {
	m := make(map[string]string, len(base)+len(kv)/2)
	for k, v := range base {
		m[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

func getenv(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestLoadConfigDefaults(t *testing.T) {
	t.Parallel()
	got, err := loadConfig(getenv(prodAuth))
	if err != nil {
		t.Fatal(err)
	}
	want := config{
		HTTPAddr: ":8080",
		Postgres: postgres.Config{URL: postgres.DefaultURL, MaxConns: 20},
		Ops:      envconfig.Ops{LogLevel: "info", ShutdownTimeout: 10 * time.Second, HTTP: envconfig.DefaultHTTPServer},
		Auth: auth.Config{JWKSURL: prodAuth["AUTH_JWKS_URL"], Issuer: prodAuth["AUTH_ISSUER"], Audience: prodAuth["AUTH_AUDIENCE"],
			ClockSkew: 30 * time.Second, RefreshInterval: 5 * time.Minute, MinRefreshInterval: 30 * time.Second},
		RequestTimeout: 10 * time.Second,
		AdminTimeout:   time.Minute,
		AcceptWorkers:  4,
		AcceptMaxBatch: 500,
		AcceptLinger:   10 * time.Millisecond,
		WaitMax:        time.Minute,
		Heartbeat:      15 * time.Second,
		PushMaxOpen:    20_000,
		PushBuffer:     64,
		PushRecent:     50_000,
		Limits:         httpapi.DefaultLimits,
		Block:          abuse.DefaultPolicy,
		Log:            httpapi.LogPolicy{ReadSample: 10, RefusalsPerSecond: 100, Slow: httpapi.DefaultSlowRequest},
		// No replica: every query goes to the primary.
		ReadPostgres:    postgres.Config{MaxConns: 20},
		CacheMaxBytes:   64 << 20,
		CacheMaxEntries: 100_000,
		// Verified tokens are remembered for a minute at most.
		TokenCacheMaxEntries: 50_000,
		TokenCacheTTL:        time.Minute,
		// The operator console is served, resolving nothing until
		// GATEWAY_PROCESSOR_URL is set.
		Console: consoleConfig{Enabled: true},
	}
	want.Limits.MaxHeaderBytes = envconfig.DefaultHTTPServer.MaxHeaderBytes
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("config (-want +got):\n%s", diff)
	}
}

func TestLoadConfigTokenRules(t *testing.T) {
	t.Parallel()
	short := strings.Repeat("s", auth.MinSecretLen-1)
	for _, tc := range []struct {
		name       string
		env        map[string]string
		wantSecret envconfig.Secret
		wantDev    bool
		wantErr    string
	}{
		{name: "production without a JWKS URL", env: map[string]string{},
			wantErr: "AUTH_JWKS_URL is not set: outside dev mode tokens are RS256 or ES256"},
		{name: "dev mode off explicitly", env: map[string]string{"FINANCE_DEV_MODE": "false"},
			wantErr: "AUTH_JWKS_URL is not set"},
		{name: "production without an issuer", env: with(prodAuth, "AUTH_ISSUER", ""),
			wantErr: "AUTH_ISSUER is not set"},
		{name: "production without an audience", env: with(prodAuth, "AUTH_AUDIENCE", ""),
			wantErr: "AUTH_AUDIENCE is not set"},
		{name: "production with an HS256 secret", env: with(prodAuth, "AUTH_JWT_SECRET", goodSecret),
			wantErr: "HS256 tokens are accepted in dev mode only"},
		{name: "production with a JWKS", env: prodAuth},
		{name: "dev mode with short secret", env: map[string]string{"AUTH_JWT_SECRET": short, "FINANCE_DEV_MODE": "true"},
			wantErr: "at least 32 bytes"},
		{name: "dev mode without secret", env: map[string]string{"FINANCE_DEV_MODE": "true"},
			wantSecret: auth.DevSecret, wantDev: true},
		{name: "dev mode with secret", env: map[string]string{"FINANCE_DEV_MODE": "1", "AUTH_JWT_SECRET": goodSecret},
			wantSecret: goodSecret},
		{name: "dev mode not a boolean", env: map[string]string{"FINANCE_DEV_MODE": "yes please"},
			wantErr: "FINANCE_DEV_MODE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := loadConfig(getenv(tc.env))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Auth.HS256Secret != tc.wantSecret || cfg.Auth.UsingDevSecret != tc.wantDev {
				t.Errorf("secret %q (dev %v), want %q (dev %v)", cfg.Auth.HS256Secret.Reveal(), cfg.Auth.UsingDevSecret, tc.wantSecret.Reveal(), tc.wantDev)
			}
		})
	}
}

func TestLoadConfigReportsEveryProblem(t *testing.T) {
	t.Parallel()
	_, err := loadConfig(getenv(map[string]string{
		"DATABASE_MAX_CONNS":       "0",
		"SHUTDOWN_TIMEOUT":         "soon",
		"LOG_LEVEL":                "loud",
		"GATEWAY_REQUEST_TIMEOUT":  "-1s",
		"GATEWAY_ACCEPT_WORKERS":   "0",
		"GATEWAY_ACCEPT_MAX_BATCH": "20000",
	}))
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"DATABASE_MAX_CONNS", "SHUTDOWN_TIMEOUT", "LOG_LEVEL", "GATEWAY_REQUEST_TIMEOUT", "AUTH_JWKS_URL",
		"GATEWAY_ACCEPT_WORKERS", "GATEWAY_ACCEPT_MAX_BATCH"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %s:\n%v", want, err)
		}
	}
}

// TestDeprecatedNamesStillWork: the names of the previous release are
// accepted for one more, with a warning each.
func TestDeprecatedNamesStillWork(t *testing.T) {
	t.Parallel()
	cfg, err := loadConfig(getenv(with(prodAuth, "GATEWAY_DB_MAX_CONNS", "12", "SHUTDOWN_GRACE", "3s")))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Postgres.MaxConns != 12 || cfg.Ops.ShutdownTimeout != 3*time.Second {
		t.Errorf("MaxConns %d, ShutdownTimeout %v: want the deprecated names' 12 and 3s", cfg.Postgres.MaxConns, cfg.Ops.ShutdownTimeout)
	}
	if len(cfg.Ops.Deprecated) != 2 {
		t.Errorf("deprecation warnings = %q, want one per old name", cfg.Ops.Deprecated)
	}
}

func TestLogValueRedactsSecrets(t *testing.T) {
	t.Parallel()
	cfg, err := loadConfig(getenv(map[string]string{
		"AUTH_JWT_SECRET":  goodSecret,
		"FINANCE_DEV_MODE": "true",
		"DATABASE_URL":     "postgres://app:hunter2hunter2@db:5432/finance",
	}))
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	slog.New(slog.NewJSONHandler(&b, nil)).Info("starting", "config", cfg)
	if strings.Contains(b.String(), "hunter2") || strings.Contains(b.String(), goodSecret) {
		t.Errorf("logged config leaks a secret: %s", b.String())
	}
	if !strings.Contains(b.String(), `"jwt_secret":"REDACTED"`) || !strings.Contains(b.String(), "app:REDACTED@db:5432") {
		t.Errorf("logged config: %s", b.String())
	}
}
