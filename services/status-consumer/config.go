package main

import (
	"log/slog"
	"time"

	"github.com/finsvc/finance/pkg/envconfig"
	"github.com/finsvc/finance/pkg/postgres"
	"github.com/finsvc/finance/services/status-consumer/internal/consumer"
)

// config is the status consumer's effective configuration, read from the environment.
type config struct {
	Postgres       postgres.Config
	Kafka          envconfig.Kafka
	Ops            envconfig.Ops
	MaxPollRecords int
	RetryTimeout   time.Duration
	AttemptTimeout time.Duration
	BatchWait      time.Duration
}

// loadConfig reads the configuration through getenv, applies the defaults and
// reports every problem at once.
func loadConfig(getenv func(string) string) (config, error) {
	r := envconfig.New(getenv)
	cfg := config{
		Postgres:       postgres.LoadConfig(r, postgres.Config{MaxConns: 16}),
		Kafka:          envconfig.LoadKafka(r, true),
		MaxPollRecords: r.IntIn("CONSUMER_MAX_POLL_RECORDS", 500, 1, 100000),
		RetryTimeout:   r.PositiveDuration("CONSUMER_RETRY_TIMEOUT", 30*time.Second),
		AttemptTimeout: r.PositiveDuration("CONSUMER_ATTEMPT_TIMEOUT", 10*time.Second),
		BatchWait:      r.Duration("CONSUMER_BATCH_WAIT", 20*time.Millisecond),
	}
	if cfg.BatchWait < 0 || cfg.BatchWait > time.Second {
		r.Fail("CONSUMER_BATCH_WAIT=%s: want 0 to 1s", cfg.BatchWait)
	}
	if cfg.Postgres.MaxConns < 2 {
		r.Fail("DATABASE_MAX_CONNS=%d: the status consumer needs at least 2", cfg.Postgres.MaxConns)
	}
	cfg.Ops = envconfig.LoadOps(r, envconfig.Ops{LogLevel: "info", Addr: ":9103", ShutdownTimeout: 10 * time.Second})
	return cfg, r.Err()
}

// Consumer returns the consumer's part of the configuration.
func (c config) Consumer() consumer.Config {
	return consumer.Config{
		Brokers:        c.Kafka.Brokers,
		MaxPollRecords: c.MaxPollRecords,
		RetryTimeout:   c.RetryTimeout,
		AttemptTimeout: c.AttemptTimeout,
		BatchWait:      c.BatchWait,
	}
}

// LogValue is the configuration as it is logged, the database password
// redacted.
func (c config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.Any("postgres", c.Postgres),
		slog.Any("kafka", c.Kafka),
		slog.Any("ops", c.Ops),
		slog.String("consumer_group", consumer.Group),
		slog.Int("max_poll_records", c.MaxPollRecords),
		slog.String("retry_timeout", c.RetryTimeout.String()),
		slog.String("attempt_timeout", c.AttemptTimeout.String()),
		slog.String("batch_wait", c.BatchWait.String()),
	)
}
