package main

import (
	"log/slog"
	"time"

	"github.com/finsvc/finance/pkg/envconfig"
	"github.com/finsvc/finance/pkg/postgres"
	"github.com/finsvc/finance/services/outbox-relay/internal/relay"
)

// DefaultLinger is RELAY_LINGER's default. At 240 payments a second (80% of
// the processor's limit) 50 ms puts about a dozen payments in each batch,
// and they stay together downstream: one fetch for the dispatcher, outcomes
// close together for the status consumer, events in a few records' fetches
// for their consumers. Against 10 ms it cut the pipeline's CPU per payment
// from 5.5 to 4.2 ms in the mixed scenario; 100 ms saved nothing more
// (docs/loadtest.md). It delays a payment's dispatch by at most as much.
const DefaultLinger = 50 * time.Millisecond

// config is the relay's effective configuration, read from the environment.
type config struct {
	// Postgres: the relay works on one dedicated connection (it holds the
	// advisory lock); the pool of MaxConns only samples the backlog.
	Postgres        postgres.Config
	Kafka           envconfig.Kafka
	Ops             envconfig.Ops
	PollInterval    time.Duration
	Linger          time.Duration
	BatchSize       int
	LockRetry       time.Duration
	BacklogInterval time.Duration
	ProduceTimeout  time.Duration
}

// loadConfig reads the configuration through getenv, applies the defaults and
// reports every problem at once.
func loadConfig(getenv func(string) string) (config, error) {
	r := envconfig.New(getenv)
	cfg := config{
		Postgres:        postgres.LoadConfig(r, postgres.Config{MaxConns: 2}),
		Kafka:           envconfig.LoadKafka(r, true),
		PollInterval:    r.PositiveDuration("RELAY_POLL_INTERVAL", 500*time.Millisecond),
		Linger:          r.Duration("RELAY_LINGER", DefaultLinger),
		BatchSize:       r.IntIn("RELAY_BATCH_SIZE", 500, 1, 10000),
		LockRetry:       r.PositiveDuration("RELAY_LOCK_RETRY", time.Second),
		BacklogInterval: r.PositiveDuration("RELAY_BACKLOG_SAMPLE_INTERVAL", 5*time.Second),
		ProduceTimeout:  r.PositiveDuration("RELAY_PRODUCE_TIMEOUT", 10*time.Second),
	}
	if cfg.Linger < 0 || cfg.Linger > time.Second {
		r.Fail("RELAY_LINGER=%s: want 0 to 1s", cfg.Linger)
	}
	cfg.Ops = envconfig.LoadOps(r, envconfig.Ops{LogLevel: "info", Addr: ":9102", ShutdownTimeout: 10 * time.Second})
	return cfg, r.Err()
}

// Relay returns the relay's part of the configuration.
func (c config) Relay() relay.Config {
	return relay.Config{
		DatabaseURL:     c.Postgres.URL.Reveal(),
		BatchSize:       c.BatchSize,
		PollInterval:    c.PollInterval,
		Linger:          c.Linger,
		LockRetry:       c.LockRetry,
		BacklogInterval: c.BacklogInterval,
	}
}

// LogValue is the configuration as it is logged, the database password
// redacted.
func (c config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.Any("postgres", c.Postgres),
		slog.Any("kafka", c.Kafka),
		slog.Any("ops", c.Ops),
		slog.String("poll_interval", c.PollInterval.String()),
		slog.String("linger", c.Linger.String()),
		slog.Int("batch_size", c.BatchSize),
		slog.String("lock_retry", c.LockRetry.String()),
		slog.String("backlog_sample_interval", c.BacklogInterval.String()),
		slog.String("produce_timeout", c.ProduceTimeout.String()),
	)
}
