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
}

// loadConfig reads the configuration through getenv, applies the defaults and
// reports every problem at once.
func loadConfig(getenv func(string) string) (config, error) {
	r := envconfig.New(getenv)
	cfg := config{
		Postgres:       postgres.LoadConfig(r, postgres.Config{MaxConns: 16}),
		Kafka:          envconfig.LoadKafka(r, true),
		MaxPollRecords: r.Int("CONSUMER_MAX_POLL_RECORDS", 500),
		RetryTimeout:   r.Duration("CONSUMER_RETRY_TIMEOUT", 30*time.Second),
		AttemptTimeout: r.Duration("CONSUMER_ATTEMPT_TIMEOUT", 10*time.Second),
	}
	cfg.Validate(r)
	cfg.Ops = envconfig.LoadOps(r, envconfig.Ops{LogLevel: "info", Addr: ":9103", ShutdownTimeout: 10 * time.Second})
	return cfg, r.Err()
}

// Validate records every invalid setting on r.
func (c config) Validate(r *envconfig.Reader) {
	if c.Postgres.MaxConns < 2 {
		r.Fail("DATABASE_MAX_CONNS=%d: the status consumer needs at least 2", c.Postgres.MaxConns)
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
	} {
		if d.v <= 0 {
			r.Fail("%s=%s: must be positive", d.name, d.v)
		}
	}
}

// Consumer returns the consumer's part of the configuration.
func (c config) Consumer() consumer.Config {
	return consumer.Config{
		Brokers:        c.Kafka.Brokers,
		MaxPollRecords: c.MaxPollRecords,
		RetryTimeout:   c.RetryTimeout,
		AttemptTimeout: c.AttemptTimeout,
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
	)
}
