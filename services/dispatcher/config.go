package main

import (
	"log/slog"
	"os"
	"time"

	"github.com/finsvc/finance/pkg/envconfig"
	"github.com/finsvc/finance/pkg/payment"
	"github.com/finsvc/finance/pkg/postgres"
)

// config is the dispatcher's effective configuration.
type config struct {
	// Postgres is the database the dispatch guard reads each payment in
	// before its processor call (and, with PROCESSOR_API=as-is, claims it).
	Postgres             postgres.Config
	Kafka                envconfig.Kafka
	Ops                  envconfig.Ops
	ProcessorURL         string
	ProcessorAPI         string
	ProcessorRateLimit   float64
	ProcessorTimeout     time.Duration
	ProcessorMaxAttempts int
	ProcessorStartRate   float64
	// ProcessorBatchMax and ProcessorBatchInFlight: payments per batch
	// call of the proposed API (1: one call per payment) and batch calls
	// at once (processor.Config).
	ProcessorBatchMax      int
	ProcessorBatchInFlight int
	// ProcessorKeyRetention is how long the processor keeps an idempotency
	// key (proposed API): the dispatch guard does not send again a payment
	// that may have been sent and was accepted longer ago.
	ProcessorKeyRetention time.Duration
	// GuardRetryFor is how long the dispatch guard retries a failing read
	// of the database before the payment ends unknown (guard_failed).
	GuardRetryFor   time.Duration
	BreakerFailures int
	BreakerOpen     time.Duration
	MaxInFlight     int
	MaxBuffered     int
	MaxPollRecords  int
	CommitInterval  time.Duration
	// CommitMinInterval is DISPATCHER_COMMIT_MIN_INTERVAL: how soon after
	// the previous commit a final outcome commits (0: on the interval only).
	CommitMinInterval time.Duration
	Group             string
	TransactionalID   string
}

// loadConfig reads the environment through getenv, reporting every problem at once.
func loadConfig(getenv func(string) string) (config, error) {
	r := envconfig.New(getenv)
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "local"
	}
	r.Rename("DISPATCHER_SHUTDOWN_GRACE", "SHUTDOWN_TIMEOUT")
	c := config{
		Postgres:               postgres.LoadConfig(r, postgres.Config{MaxConns: 32}),
		Kafka:                  envconfig.LoadKafka(r, true),
		ProcessorURL:           r.String("PROCESSOR_URL", "http://127.0.0.1:8090"),
		ProcessorAPI:           r.String("PROCESSOR_API", "proposed"),
		ProcessorRateLimit:     r.Float("PROCESSOR_RATE_LIMIT", 0),
		ProcessorTimeout:       r.PositiveDuration("PROCESSOR_TIMEOUT", 2*time.Second),
		ProcessorMaxAttempts:   r.IntIn("PROCESSOR_MAX_ATTEMPTS", 5, 1, 10_000),
		ProcessorStartRate:     r.Float("PROCESSOR_START_RATE", 50),
		ProcessorBatchMax:      r.IntIn("PROCESSOR_BATCH_MAX", 64, 1, 100),
		ProcessorBatchInFlight: r.IntIn("PROCESSOR_BATCH_IN_FLIGHT", 2, 1, 1000),
		ProcessorKeyRetention:  r.PositiveDuration("PROCESSOR_KEY_RETENTION", payment.KeyRetention),
		GuardRetryFor:          r.PositiveDuration("DISPATCHER_GUARD_RETRY_FOR", 30*time.Second),
		BreakerFailures:        r.IntIn("PROCESSOR_BREAKER_FAILURES", 10, 1, 1_000_000_000),
		BreakerOpen:            r.PositiveDuration("PROCESSOR_BREAKER_OPEN", 2*time.Second),
		MaxInFlight:            r.IntIn("DISPATCHER_MAX_IN_FLIGHT", 512, 1, 100_000),
		MaxBuffered:            r.IntIn("DISPATCHER_MAX_BUFFERED", 10000, 1, 10_000_000),
		MaxPollRecords:         r.IntIn("DISPATCHER_MAX_POLL_RECORDS", 1000, 1, 1_000_000),
		CommitInterval:         r.PositiveDuration("DISPATCHER_COMMIT_INTERVAL", 200*time.Millisecond),
		CommitMinInterval:      r.Duration("DISPATCHER_COMMIT_MIN_INTERVAL", 50*time.Millisecond),
		Group:                  r.String("DISPATCHER_GROUP", "dispatcher"),
		TransactionalID:        r.String("DISPATCHER_TRANSACTIONAL_ID", "dispatcher-"+host),
	}
	switch c.ProcessorAPI {
	case "proposed", "as-is":
	default:
		r.Fail("PROCESSOR_API=%q: want proposed or as-is", c.ProcessorAPI)
	}
	if c.ProcessorRateLimit < 0 {
		r.Fail("PROCESSOR_RATE_LIMIT=%v: want >= 0 calls per second (0: unknown, probed)", c.ProcessorRateLimit)
	}
	if getenv("DISPATCHER_COMMIT_MIN_INTERVAL") == "" {
		// The default never exceeds a shorter DISPATCHER_COMMIT_INTERVAL.
		c.CommitMinInterval = min(c.CommitMinInterval, c.CommitInterval)
	}
	if c.CommitMinInterval < 0 || c.CommitMinInterval > c.CommitInterval {
		r.Fail("DISPATCHER_COMMIT_MIN_INTERVAL=%s: want 0 (off) to DISPATCHER_COMMIT_INTERVAL (%s)", c.CommitMinInterval, c.CommitInterval)
	}
	if c.ProcessorStartRate <= 0 {
		r.Fail("PROCESSOR_START_RATE=%v: want > 0 calls per second", c.ProcessorStartRate)
	}
	c.Ops = envconfig.LoadOps(r, envconfig.Ops{LogLevel: "info", Addr: ":9101", ShutdownTimeout: 30 * time.Second})
	return c, r.Err()
}

// LogValue logs durations as text ("2s") rather than nanoseconds, and the
// database URL redacted.
func (c config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.Any("postgres", c.Postgres),
		slog.Any("kafka", c.Kafka),
		slog.Any("ops", c.Ops),
		slog.String("processor_url", c.ProcessorURL),
		slog.String("processor_api", c.ProcessorAPI),
		slog.Float64("processor_rate_limit", c.ProcessorRateLimit),
		slog.String("processor_timeout", c.ProcessorTimeout.String()),
		slog.Int("processor_max_attempts", c.ProcessorMaxAttempts),
		slog.Float64("processor_start_rate", c.ProcessorStartRate),
		slog.Int("processor_batch_max", c.ProcessorBatchMax),
		slog.Int("processor_batch_in_flight", c.ProcessorBatchInFlight),
		slog.String("processor_key_retention", c.ProcessorKeyRetention.String()),
		slog.String("guard_retry_for", c.GuardRetryFor.String()),
		slog.Int("breaker_failures", c.BreakerFailures),
		slog.String("breaker_open", c.BreakerOpen.String()),
		slog.Int("max_in_flight", c.MaxInFlight),
		slog.Int("max_buffered", c.MaxBuffered),
		slog.Int("max_poll_records", c.MaxPollRecords),
		slog.String("commit_interval", c.CommitInterval.String()),
		slog.String("commit_min_interval", c.CommitMinInterval.String()),
		slog.String("group", c.Group),
		slog.String("transactional_id", c.TransactionalID),
	)
}
