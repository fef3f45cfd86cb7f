package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/finsvc/finance/pkg/auth"
	"github.com/finsvc/finance/pkg/envconfig"
	"github.com/finsvc/finance/pkg/postgres"
)

// config is the gateway's whole configuration, read from the environment.
type config struct {
	HTTPAddr       string
	DatabaseURL    envconfig.Secret // may carry a password; logged redacted
	DBMaxConns     int
	JWTSecret      envconfig.Secret
	DevMode        bool
	LogLevel       string
	ShutdownGrace  time.Duration
	RequestTimeout time.Duration
	// KafkaBrokers enables the admin dead-letter routes; empty disables them.
	KafkaBrokers []string
	// AdminTimeout bounds one admin request (a paced DLQ replay can be long).
	AdminTimeout time.Duration
	// AcceptWorkers is how many group-commit transactions of accepted
	// payments may run at once; AcceptMaxBatch the most payments in one.
	AcceptWorkers  int
	AcceptMaxBatch int
	// UsingDevSecret is set when dev mode filled in auth.DevSecret.
	UsingDevSecret bool
}

// loadConfig reads the configuration through getenv and reports every
// problem at once.
func loadConfig(getenv func(string) string) (config, error) {
	r := envconfig.New(getenv)
	c := config{
		HTTPAddr:       r.String("HTTP_ADDR", ":8080"),
		DatabaseURL:    envconfig.Secret(r.String("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/finance?sslmode=disable")),
		DBMaxConns:     r.Int("GATEWAY_DB_MAX_CONNS", 20),
		JWTSecret:      r.Secret("AUTH_JWT_SECRET", ""),
		DevMode:        r.Bool("FINANCE_DEV_MODE", false),
		LogLevel:       strings.ToLower(r.String("LOG_LEVEL", "info")),
		ShutdownGrace:  r.Duration("SHUTDOWN_GRACE", 10*time.Second),
		RequestTimeout: r.Duration("GATEWAY_REQUEST_TIMEOUT", 10*time.Second),
		KafkaBrokers:   r.List("KAFKA_BROKERS", nil),
		AdminTimeout:   r.Duration("GATEWAY_ADMIN_TIMEOUT", time.Minute),
		AcceptWorkers:  r.Int("GATEWAY_ACCEPT_WORKERS", 4),
		AcceptMaxBatch: r.Int("GATEWAY_ACCEPT_MAX_BATCH", 500),
	}
	if c.DBMaxConns < 1 || c.DBMaxConns > 1000 {
		r.Fail("GATEWAY_DB_MAX_CONNS=%d: must be from 1 to 1000", c.DBMaxConns)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		r.Fail("LOG_LEVEL=%q: want debug, info, warn or error", c.LogLevel)
	}
	if c.ShutdownGrace <= 0 {
		r.Fail("SHUTDOWN_GRACE=%s: must be positive", c.ShutdownGrace)
	}
	if c.RequestTimeout <= 0 {
		r.Fail("GATEWAY_REQUEST_TIMEOUT=%s: must be positive", c.RequestTimeout)
	}
	if c.AcceptWorkers < 1 || c.AcceptWorkers >= c.DBMaxConns {
		r.Fail("GATEWAY_ACCEPT_WORKERS=%d: must be from 1 to GATEWAY_DB_MAX_CONNS-1 (%d), leaving connections for reads",
			c.AcceptWorkers, c.DBMaxConns-1)
	}
	if c.AcceptMaxBatch < 1 || c.AcceptMaxBatch > 10_000 {
		r.Fail("GATEWAY_ACCEPT_MAX_BATCH=%d: must be from 1 to 10000", c.AcceptMaxBatch)
	}
	if c.AdminTimeout <= 0 {
		r.Fail("GATEWAY_ADMIN_TIMEOUT=%s: must be positive", c.AdminTimeout)
	}
	switch {
	case c.JWTSecret == "" && c.DevMode:
		c.JWTSecret, c.UsingDevSecret = auth.DevSecret, true
	case c.JWTSecret == "":
		r.Fail("AUTH_JWT_SECRET is not set: the gateway needs the HS256 secret that signs bearer tokens "+
			"(at least %d bytes; set FINANCE_DEV_MODE=true to use the public dev secret on a developer machine)",
			auth.MinSecretLen)
	case len(c.JWTSecret) < auth.MinSecretLen:
		// A short secret is refused in dev mode too: it is a mistake, not a default.
		r.Fail("AUTH_JWT_SECRET is %d bytes: it must be at least %d bytes", len(c.JWTSecret), auth.MinSecretLen)
	}
	if err := r.Err(); err != nil {
		return config{}, fmt.Errorf("gateway config: %w", err)
	}
	return c, nil
}

// logAttrs is the effective configuration as it is logged at start, with
// secrets redacted.
func (c config) logAttrs() []any {
	return []any{
		"http_addr", c.HTTPAddr,
		"database_url", postgres.RedactURL(c.DatabaseURL.Reveal()),
		"db_max_conns", c.DBMaxConns,
		"auth_jwt_secret", c.JWTSecret,
		"dev_mode", c.DevMode,
		"log_level", c.LogLevel,
		"shutdown_grace", c.ShutdownGrace.String(),
		"request_timeout", c.RequestTimeout.String(),
		"kafka_brokers", c.KafkaBrokers,
		"admin_timeout", c.AdminTimeout.String(),
		"accept_workers", c.AcceptWorkers,
		"accept_max_batch", c.AcceptMaxBatch,
	}
}
