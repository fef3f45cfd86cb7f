package app

import (
	"fmt"
	"net"
	"time"

	"github.com/finsvc/finance/pkg/auth"
	"github.com/finsvc/finance/pkg/envconfig"
)

// Config is the service's settings, all from the environment.
type Config struct {
	HTTPAddr         string
	DatabaseURL      envconfig.Secret
	DBMaxConns       int
	ProcessorURL     string
	ProcessorTimeout time.Duration
	JWTSecret        envconfig.Secret
	DevMode          bool
	LogLevel         string
	ShutdownGrace    time.Duration
}

// DefaultDatabaseURL is the as-is service's own database on the same server
// as the pipeline's.
const DefaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/finance_legacy?sslmode=disable"

func loadConfig(getenv func(string) string) (Config, error) {
	r := envconfig.New(getenv)
	c := Config{
		HTTPAddr:         r.String("HTTP_ADDR", ":8070"),
		DatabaseURL:      envconfig.Secret(r.String("DATABASE_URL", DefaultDatabaseURL)),
		DBMaxConns:       r.Int("LEGACY_DB_MAX_CONNS", 20),
		ProcessorURL:     r.String("PROCESSOR_URL", "http://127.0.0.1:8090"),
		ProcessorTimeout: r.Duration("LEGACY_PROCESSOR_TIMEOUT", 5*time.Second),
		JWTSecret:        r.Secret("AUTH_JWT_SECRET", ""),
		DevMode:          r.Bool("FINANCE_DEV_MODE", false),
		LogLevel:         r.String("LOG_LEVEL", "info"),
		ShutdownGrace:    r.Duration("SHUTDOWN_GRACE", 10*time.Second),
	}
	if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
		r.Fail("HTTP_ADDR=%q: want host:port", c.HTTPAddr)
	}
	if c.DBMaxConns < 1 {
		r.Fail("LEGACY_DB_MAX_CONNS=%d: want at least 1", c.DBMaxConns)
	}
	if c.ProcessorTimeout <= 0 {
		r.Fail("LEGACY_PROCESSOR_TIMEOUT=%s: want a positive duration", c.ProcessorTimeout)
	}
	if c.ShutdownGrace <= 0 {
		r.Fail("SHUTDOWN_GRACE=%s: want a positive duration", c.ShutdownGrace)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		r.Fail("LOG_LEVEL=%q: want debug, info, warn or error", c.LogLevel)
	}
	if s := c.JWTSecret.Reveal(); s != "" && len(s) < auth.MinSecretLen {
		r.Fail("AUTH_JWT_SECRET: want at least %d bytes", auth.MinSecretLen)
	}
	return c, r.Err()
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
