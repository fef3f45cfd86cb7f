package main

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/finsvc/finance/pkg/auth"
	"github.com/finsvc/finance/pkg/envconfig"
	"github.com/finsvc/finance/pkg/postgres"
	"github.com/finsvc/finance/pkg/webhook"
	"github.com/finsvc/finance/services/gateway/internal/abuse"
	"github.com/finsvc/finance/services/gateway/internal/cache"
	"github.com/finsvc/finance/services/gateway/internal/httpapi"
	"github.com/finsvc/finance/services/gateway/internal/push"
	"github.com/finsvc/finance/services/gateway/internal/tokencache"
)

// config is the gateway's whole configuration, read from the environment.
type config struct {
	HTTPAddr string
	Postgres postgres.Config
	// Kafka enables the admin dead-letter routes; no brokers disables them.
	Kafka envconfig.Kafka
	// Ops.Addr is OPS_ADDR, optional: when set, an ops listener there
	// serves /loglevel (GET and PUT), /metrics, /healthz, /readyz and
	// /debug/pprof/, as every other service's ops port does. /healthz,
	// /readyz and /metrics stay on HTTP_ADDR as well, with or without it.
	Ops envconfig.Ops
	// Auth is the token settings (auth.LoadConfig): AUTH_JWKS_URL,
	// AUTH_ISSUER, AUTH_AUDIENCE, AUTH_CLOCK_SKEW, ..., and AUTH_JWT_SECRET
	// in dev mode only.
	Auth           auth.Config
	DevMode        bool
	RequestTimeout time.Duration
	// AdminTimeout bounds one admin request (a paced DLQ replay can be long).
	AdminTimeout time.Duration
	// AcceptWorkers is how many group-commit transactions of accepted
	// payments may run at once; AcceptMaxBatch the most payments in one.
	AcceptWorkers  int
	AcceptMaxBatch int
	// AcceptLinger keeps a group commit open that long for more payments.
	AcceptLinger time.Duration
	// Push: the long-poll's longest wait, the SSE heartbeat, the cap on
	// open long-polls plus streams, a stream's event buffer and the events
	// kept for streams that resume (see internal/push).
	WaitMax     time.Duration
	Heartbeat   time.Duration
	PushMaxOpen int
	PushBuffer  int
	PushRecent  int
	// Limits is the per-client rate limits (GATEWAY_RATE_LIMIT_*, limits.go)
	// and the header cap (HTTP_MAX_HEADER_BYTES).
	Limits httpapi.Limits
	// Block is when an address that keeps getting refused is shut out
	// (GATEWAY_BLOCK_*, limits.go).
	Block abuse.Policy
	// Log is which requests are logged (LOG_READ_SAMPLE,
	// LOG_REFUSALS_PER_SECOND, LOG_SLOW_REQUEST).
	Log httpapi.LogPolicy
	// WebhookAllowPrivate lists the private networks webhook endpoints may
	// point at (WEBHOOK_ALLOW_PRIVATE, as the delivery service's), as
	// set and parsed.
	WebhookAllowPrivate string
	WebhookAllow        []netip.Prefix
	// ReadPostgres is a read-only pool on a streaming replica
	// (DATABASE_READ_URL, DATABASE_READ_MAX_CONNS) serving feed pages;
	// ReadPostgres.URL empty: every query goes to the primary.
	ReadPostgres postgres.Config
	// CacheMaxBytes and CacheMaxEntries bound the read cache
	// (internal/cache); 0 turns it off.
	CacheMaxBytes   int
	CacheMaxEntries int
	// TokenCacheMaxEntries and TokenCacheTTL bound the cache of verified
	// bearer tokens (internal/tokencache); 0 turns it off.
	TokenCacheMaxEntries int
	TokenCacheTTL        time.Duration
	// Console is the operator console's settings (console.go).
	Console consoleConfig
}

// WebhookPolicy is how endpoint URLs are checked at registration: https
// outside dev mode, no private address unless allowed.
func (c config) WebhookPolicy() webhook.Policy {
	return webhook.Policy{AllowHTTP: c.DevMode, Allow: c.WebhookAllow}
}

// loadConfig reads the configuration through getenv and reports every
// problem at once.
func loadConfig(getenv func(string) string) (config, error) {
	r := envconfig.New(getenv)
	r.Rename("GATEWAY_DB_MAX_CONNS", "DATABASE_MAX_CONNS")
	c := config{
		HTTPAddr:            r.String("HTTP_ADDR", ":8080"),
		Postgres:            postgres.LoadConfig(r, postgres.Config{MaxConns: 20}),
		Kafka:               envconfig.LoadKafka(r, false),
		DevMode:             r.Bool("FINANCE_DEV_MODE", false),
		RequestTimeout:      r.PositiveDuration("GATEWAY_REQUEST_TIMEOUT", 10*time.Second),
		AdminTimeout:        r.PositiveDuration("GATEWAY_ADMIN_TIMEOUT", time.Minute),
		AcceptWorkers:       r.Int("GATEWAY_ACCEPT_WORKERS", 4),
		AcceptMaxBatch:      r.IntIn("GATEWAY_ACCEPT_MAX_BATCH", 500, 1, 10_000),
		AcceptLinger:        r.Duration("GATEWAY_ACCEPT_LINGER", 10*time.Millisecond),
		WaitMax:             r.PositiveDuration("GATEWAY_WAIT_MAX", httpapi.DefaultWaitMax),
		Heartbeat:           r.PositiveDuration("GATEWAY_SSE_HEARTBEAT", httpapi.DefaultHeartbeat),
		PushMaxOpen:         r.IntIn("GATEWAY_PUSH_MAX_OPEN", push.DefaultMaxSubscribers, 1, 1_000_000),
		PushBuffer:          r.IntIn("GATEWAY_PUSH_BUFFER", push.DefaultBuffer, 1, 10_000),
		PushRecent:          r.IntIn("GATEWAY_PUSH_RECENT_EVENTS", push.DefaultRecentEvents, 1, 10_000_000),
		WebhookAllowPrivate: r.String("WEBHOOK_ALLOW_PRIVATE", ""),
		CacheMaxBytes:       r.IntIn("GATEWAY_CACHE_MAX_BYTES", cache.DefaultMaxBytes, 0, 1<<40),
		CacheMaxEntries:     r.IntIn("GATEWAY_CACHE_MAX_ENTRIES", cache.DefaultMaxEntries, 0, 100_000_000),

		TokenCacheMaxEntries: r.IntIn("GATEWAY_TOKEN_CACHE_MAX_ENTRIES", tokencache.DefaultMaxEntries, 0, 10_000_000),
		TokenCacheTTL:        r.Duration("GATEWAY_TOKEN_CACHE_TTL", tokencache.DefaultTTL),
	}
	if c.TokenCacheTTL < 0 || c.TokenCacheTTL > tokencache.MaxTTL {
		r.Fail("GATEWAY_TOKEN_CACHE_TTL=%s: must be from 0 (off) to %s", c.TokenCacheTTL, tokencache.MaxTTL)
	}
	c.ReadPostgres = postgres.Config{
		URL:      r.Secret("DATABASE_READ_URL", ""),
		MaxConns: r.IntIn("DATABASE_READ_MAX_CONNS", 20, 1, 1000),
	}
	if u := c.ReadPostgres.URL.Reveal(); u != "" {
		if _, err := pgx.ParseConfig(u); err != nil {
			r.Fail("DATABASE_READ_URL=%s: %v", postgres.RedactURL(u), err)
		}
	}
	allow, err := webhook.ParseAllowlist(c.WebhookAllowPrivate)
	if err != nil {
		r.Fail("WEBHOOK_ALLOW_PRIVATE: %v", err)
	}
	c.WebhookAllow = allow
	if c.AcceptWorkers < 1 || c.AcceptWorkers >= c.Postgres.MaxConns {
		r.Fail("GATEWAY_ACCEPT_WORKERS=%d: must be from 1 to DATABASE_MAX_CONNS-1 (%d), leaving connections for reads",
			c.AcceptWorkers, c.Postgres.MaxConns-1)
	}
	if c.AcceptLinger < 0 || c.AcceptLinger > time.Second {
		r.Fail("GATEWAY_ACCEPT_LINGER=%s: must be from 0 (off) to 1s", c.AcceptLinger)
	}
	c.Auth = auth.LoadConfig(r, c.DevMode)
	c.Limits = loadLimits(r)
	c.Block = loadBlockPolicy(r)
	c.Log = loadLogPolicy(r)
	c.Console = loadConsoleConfig(r)
	c.Ops = envconfig.LoadOps(r, envconfig.Ops{LogLevel: "info", ShutdownTimeout: 10 * time.Second})
	// LoadOps reads OPS_ADDR only for a service that always has an ops
	// port; the gateway's is optional, empty by default.
	c.Ops.Addr = r.String("OPS_ADDR", "")
	if c.Ops.Addr != "" {
		if _, _, err := net.SplitHostPort(c.Ops.Addr); err != nil {
			r.Fail("OPS_ADDR=%q: want host:port or :port", c.Ops.Addr)
		}
	}
	c.Limits.MaxHeaderBytes = c.Ops.HTTP.MaxHeaderBytes
	if err := r.Err(); err != nil {
		return config{}, fmt.Errorf("gateway config: %w", err)
	}
	return c, nil
}

// LogValue is the effective configuration as it is logged at start, with
// secrets redacted.
func (c config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("http_addr", c.HTTPAddr),
		slog.Any("postgres", c.Postgres),
		slog.Any("kafka", c.Kafka),
		slog.Any("ops", c.Ops),
		slog.Any("limits", limitsLogValue(c.Limits)),
		slog.Any("block", blockLogValue(c.Block)),
		slog.Int("log_read_sample", c.Log.ReadSample),
		slog.Int("log_refusals_per_second", c.Log.RefusalsPerSecond),
		slog.String("log_slow_request", c.Log.Slow.String()),
		slog.Any("auth", c.Auth),
		slog.Bool("dev_mode", c.DevMode),
		slog.String("request_timeout", c.RequestTimeout.String()),
		slog.String("admin_timeout", c.AdminTimeout.String()),
		slog.Int("accept_workers", c.AcceptWorkers),
		slog.Int("accept_max_batch", c.AcceptMaxBatch),
		slog.String("accept_linger", c.AcceptLinger.String()),
		slog.String("wait_max", c.WaitMax.String()),
		slog.String("sse_heartbeat", c.Heartbeat.String()),
		slog.Int("push_max_open", c.PushMaxOpen),
		slog.Int("push_buffer", c.PushBuffer),
		slog.Int("push_recent_events", c.PushRecent),
		slog.String("webhook_allow_private", c.WebhookAllowPrivate),
		slog.Any("read_postgres", readPostgresLogValue(c.ReadPostgres)),
		slog.Int("cache_max_bytes", c.CacheMaxBytes),
		slog.Int("cache_max_entries", c.CacheMaxEntries),
		slog.Int("token_cache_max_entries", c.TokenCacheMaxEntries),
		slog.String("token_cache_ttl", c.TokenCacheTTL.String()),
		slog.Any("console", c.Console),
	)
}

// readPostgresLogValue logs the read pool, or "primary only" without one.
func readPostgresLogValue(p postgres.Config) slog.Value {
	if p.URL.Reveal() == "" {
		return slog.StringValue("none (primary only)")
	}
	return p.LogValue()
}
