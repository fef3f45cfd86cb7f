package main

import (
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/finsvc/finance/pkg/envconfig"
	"github.com/finsvc/finance/pkg/postgres"
	"github.com/finsvc/finance/services/status-consumer/internal/consumer"
)

// config is the status consumer's effective configuration, read from the environment.
type config struct {
	DatabaseURL      string
	DatabaseMaxConns int
	KafkaBrokers     []string
	LogLevel         string
	OpsAddr          string
	MaxPollRecords   int
	RetryTimeout     time.Duration
	AttemptTimeout   time.Duration
	ShutdownTimeout  time.Duration
}

// loadConfig reads the configuration through getenv, applies the defaults and
// reports every problem at once.
func loadConfig(getenv func(string) string) (config, error) {
	r := envconfig.New(getenv)
	cfg := config{
		DatabaseURL:      r.String("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/finance?sslmode=disable"),
		DatabaseMaxConns: r.Int("DATABASE_MAX_CONNS", 16),
		KafkaBrokers:     r.List("KAFKA_BROKERS", []string{"127.0.0.1:9092"}),
		LogLevel:         r.String("LOG_LEVEL", "info"),
		OpsAddr:          r.String("OPS_ADDR", ":9103"),
		MaxPollRecords:   r.Int("CONSUMER_MAX_POLL_RECORDS", 500),
		RetryTimeout:     r.Duration("CONSUMER_RETRY_TIMEOUT", 30*time.Second),
		AttemptTimeout:   r.Duration("CONSUMER_ATTEMPT_TIMEOUT", 10*time.Second),
		ShutdownTimeout:  r.Duration("SHUTDOWN_TIMEOUT", 10*time.Second),
	}
	cfg.Validate(r)
	return cfg, r.Err()
}

// Validate records every invalid setting on r.
func (c config) Validate(r *envconfig.Reader) {
	if _, err := pgx.ParseConfig(c.DatabaseURL); err != nil {
		r.Fail("DATABASE_URL: %v", err)
	}
	if c.DatabaseMaxConns < 2 || c.DatabaseMaxConns > 1000 {
		r.Fail("DATABASE_MAX_CONNS=%d: want 2 to 1000", c.DatabaseMaxConns)
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
	if c.MaxPollRecords < 1 || c.MaxPollRecords > 100000 {
		r.Fail("CONSUMER_MAX_POLL_RECORDS=%d: want 1 to 100000", c.MaxPollRecords)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"CONSUMER_RETRY_TIMEOUT", c.RetryTimeout},
		{"CONSUMER_ATTEMPT_TIMEOUT", c.AttemptTimeout},
		{"SHUTDOWN_TIMEOUT", c.ShutdownTimeout},
	} {
		if d.v <= 0 {
			r.Fail("%s=%s: must be positive", d.name, d.v)
		}
	}
}

// Consumer returns the consumer's part of the configuration.
func (c config) Consumer() consumer.Config {
	return consumer.Config{
		Brokers:        c.KafkaBrokers,
		MaxPollRecords: c.MaxPollRecords,
		RetryTimeout:   c.RetryTimeout,
		AttemptTimeout: c.AttemptTimeout,
	}
}

// LogAttrs returns the configuration as log attributes, the database
// password redacted.
func (c config) LogAttrs() []any {
	return []any{
		slog.String("database_url", postgres.RedactURL(c.DatabaseURL)),
		slog.Int("database_max_conns", c.DatabaseMaxConns),
		slog.Any("kafka_brokers", c.KafkaBrokers),
		slog.String("log_level", c.LogLevel),
		slog.String("ops_addr", c.OpsAddr),
		slog.String("consumer_group", consumer.Group),
		slog.Int("max_poll_records", c.MaxPollRecords),
		slog.String("retry_timeout", c.RetryTimeout.String()),
		slog.String("attempt_timeout", c.AttemptTimeout.String()),
		slog.String("shutdown_timeout", c.ShutdownTimeout.String()),
	}
}
