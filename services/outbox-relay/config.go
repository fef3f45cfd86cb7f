package main

import (
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/finsvc/finance/pkg/envconfig"
	"github.com/finsvc/finance/pkg/postgres"
	"github.com/finsvc/finance/services/outbox-relay/internal/relay"
)

// config is the relay's effective configuration, read from the environment.
type config struct {
	DatabaseURL     string
	KafkaBrokers    []string
	LogLevel        string
	OpsAddr         string
	PollInterval    time.Duration
	BatchSize       int
	LockRetry       time.Duration
	BacklogInterval time.Duration
	ProduceTimeout  time.Duration
	ShutdownTimeout time.Duration
}

// loadConfig reads the configuration through getenv, applies the defaults and
// reports every problem at once.
func loadConfig(getenv func(string) string) (config, error) {
	r := envconfig.New(getenv)
	cfg := config{
		DatabaseURL:     r.String("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/finance?sslmode=disable"),
		KafkaBrokers:    r.List("KAFKA_BROKERS", []string{"127.0.0.1:9092"}),
		LogLevel:        r.String("LOG_LEVEL", "info"),
		OpsAddr:         r.String("OPS_ADDR", ":9102"),
		PollInterval:    r.Duration("RELAY_POLL_INTERVAL", 500*time.Millisecond),
		BatchSize:       r.Int("RELAY_BATCH_SIZE", 500),
		LockRetry:       r.Duration("RELAY_LOCK_RETRY", time.Second),
		BacklogInterval: r.Duration("RELAY_BACKLOG_SAMPLE_INTERVAL", 5*time.Second),
		ProduceTimeout:  r.Duration("RELAY_PRODUCE_TIMEOUT", 10*time.Second),
		ShutdownTimeout: r.Duration("SHUTDOWN_TIMEOUT", 10*time.Second),
	}
	cfg.Validate(r)
	return cfg, r.Err()
}

// Validate records every invalid setting on r.
func (c config) Validate(r *envconfig.Reader) {
	if _, err := pgx.ParseConfig(c.DatabaseURL); err != nil {
		r.Fail("DATABASE_URL: %v", err)
	}
	if len(c.KafkaBrokers) == 0 {
		r.Fail("KAFKA_BROKERS: at least one broker is required")
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		r.Fail("LOG_LEVEL=%q: want debug, info, warn or error", c.LogLevel)
	}
	if c.OpsAddr == "" {
		r.Fail("OPS_ADDR: must not be empty")
	}
	if c.BatchSize < 1 || c.BatchSize > 10000 {
		r.Fail("RELAY_BATCH_SIZE=%d: want 1 to 10000", c.BatchSize)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"RELAY_POLL_INTERVAL", c.PollInterval},
		{"RELAY_LOCK_RETRY", c.LockRetry},
		{"RELAY_BACKLOG_SAMPLE_INTERVAL", c.BacklogInterval},
		{"RELAY_PRODUCE_TIMEOUT", c.ProduceTimeout},
		{"SHUTDOWN_TIMEOUT", c.ShutdownTimeout},
	} {
		if d.v <= 0 {
			r.Fail("%s=%s: must be positive", d.name, d.v)
		}
	}
}

// Relay returns the relay's part of the configuration.
func (c config) Relay() relay.Config {
	return relay.Config{
		DatabaseURL:     c.DatabaseURL,
		BatchSize:       c.BatchSize,
		PollInterval:    c.PollInterval,
		LockRetry:       c.LockRetry,
		BacklogInterval: c.BacklogInterval,
	}
}

// LogAttrs returns the configuration as log attributes, the database
// password redacted.
func (c config) LogAttrs() []any {
	return []any{
		slog.String("database_url", postgres.RedactURL(c.DatabaseURL)),
		slog.Any("kafka_brokers", c.KafkaBrokers),
		slog.String("log_level", c.LogLevel),
		slog.String("ops_addr", c.OpsAddr),
		slog.String("poll_interval", c.PollInterval.String()),
		slog.Int("batch_size", c.BatchSize),
		slog.String("lock_retry", c.LockRetry.String()),
		slog.String("backlog_sample_interval", c.BacklogInterval.String()),
		slog.String("produce_timeout", c.ProduceTimeout.String()),
		slog.String("shutdown_timeout", c.ShutdownTimeout.String()),
	}
}
