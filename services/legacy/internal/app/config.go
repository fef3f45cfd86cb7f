package app

import (
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/finsvc/finance/pkg/auth"
	"github.com/finsvc/finance/pkg/envconfig"
	"github.com/finsvc/finance/pkg/postgres"
)

// Config is the service's settings, all from the environment.
type Config struct {
	HTTPAddr         string
	Postgres         postgres.Config
	Ops              envconfig.Ops // no ops address: /metrics is on HTTP_ADDR
	ProcessorURL     string
	ProcessorTimeout time.Duration
	JWTSecret        envconfig.Secret
	DevMode          bool
}

// DefaultDatabaseURL is the as-is service's own database on the same server
// as the pipeline's.
const DefaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/finance_legacy?sslmode=disable"

func loadConfig(getenv func(string) string) (Config, error) {
	r := envconfig.New(getenv)
	r.Rename("LEGACY_DB_MAX_CONNS", "DATABASE_MAX_CONNS")
	c := Config{
		HTTPAddr:         r.String("HTTP_ADDR", ":8070"),
		Postgres:         postgres.LoadConfig(r, postgres.Config{URL: DefaultDatabaseURL, MaxConns: 20}),
		ProcessorURL:     r.String("PROCESSOR_URL", "http://127.0.0.1:8090"),
		ProcessorTimeout: r.PositiveDuration("LEGACY_PROCESSOR_TIMEOUT", 5*time.Second),
		JWTSecret:        r.Secret("AUTH_JWT_SECRET", ""),
		DevMode:          r.Bool("FINANCE_DEV_MODE", false),
	}
	if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
		r.Fail("HTTP_ADDR=%q: want host:port", c.HTTPAddr)
	}
	if s := c.JWTSecret.Reveal(); s != "" && len(s) < auth.MinSecretLen {
		r.Fail("AUTH_JWT_SECRET: want at least %d bytes", auth.MinSecretLen)
	}
	c.Ops = envconfig.LoadOps(r, envconfig.Ops{LogLevel: "info", ShutdownTimeout: 10 * time.Second})
	return c, r.Err()
}

// LogValue is the configuration as it is logged at start, secrets redacted.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("http_addr", c.HTTPAddr),
		slog.Any("postgres", c.Postgres),
		slog.Any("ops", c.Ops),
		slog.String("processor_url", c.ProcessorURL),
		slog.String("processor_timeout", c.ProcessorTimeout.String()),
		slog.Any("auth_jwt_secret", c.JWTSecret),
		slog.Bool("dev_mode", c.DevMode),
	)
}

// secret returns the token secret: AUTH_JWT_SECRET, or the documented dev
// secret in dev mode.
func (c Config) secret() ([]byte, error) {
	switch s := c.JWTSecret.Reveal(); {
	case s != "":
		return []byte(s), nil
	case c.DevMode:
		return []byte(auth.DevSecret), nil
	default:
		return nil, fmt.Errorf("AUTH_JWT_SECRET is unset: set it (at least %d bytes), or FINANCE_DEV_MODE=true to use the dev secret", auth.MinSecretLen)
	}
}
