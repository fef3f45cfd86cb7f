package main

import (
	"log/slog"
	"strings"
	"time"

	"github.com/finsvc/finance/pkg/envconfig"
	"github.com/finsvc/finance/pkg/postgres"
	"github.com/finsvc/finance/pkg/webhook"
	"github.com/finsvc/finance/services/webhook-delivery/internal/delivery"
)

// config is the service's effective configuration, read from the environment.
type config struct {
	Postgres            postgres.Config
	Kafka               envconfig.Kafka
	Ops                 envconfig.Ops
	DevMode             bool
	AllowPrivate        string
	DLQTopic            string
	OpsTopic            string
	MaxPollRecords      int
	Schedule            []time.Duration
	Timeout             time.Duration
	Lease               time.Duration
	MaxInFlight         int
	EndpointConcurrency int
	BreakerFailures     int
	BreakerOpen         time.Duration
	PollInterval        time.Duration
	ResponseLogBytes    int
	policy              webhook.Policy
}

// loadConfig reads the configuration through getenv, applies the defaults and
// reports every problem at once.
func loadConfig(getenv func(string) string) (config, error) {
	r := envconfig.New(getenv)
	cfg := config{
		Postgres:            postgres.LoadConfig(r, postgres.Config{MaxConns: 8}),
		Kafka:               envconfig.LoadKafka(r, true),
		DevMode:             r.Bool("FINANCE_DEV_MODE", false),
		AllowPrivate:        r.String("WEBHOOK_ALLOW_PRIVATE", ""),
		DLQTopic:            r.String("WEBHOOK_DLQ_TOPIC", delivery.DefaultDLQTopic),
		OpsTopic:            r.String("WEBHOOK_OPS_TOPIC", delivery.DefaultOpsTopic),
		MaxPollRecords:      r.IntIn("CONSUMER_MAX_POLL_RECORDS", 500, 1, 100000),
		Timeout:             r.PositiveDuration("WEBHOOK_TIMEOUT", 15*time.Second),
		Lease:               r.PositiveDuration("WEBHOOK_LEASE", time.Minute),
		MaxInFlight:         r.IntIn("WEBHOOK_MAX_IN_FLIGHT", 1024, 1, 100000),
		EndpointConcurrency: r.IntIn("WEBHOOK_ENDPOINT_CONCURRENCY", 8, 1, 1000),
		BreakerFailures:     r.IntIn("WEBHOOK_BREAKER_FAILURES", 5, 1, 1000),
		BreakerOpen:         r.PositiveDuration("WEBHOOK_BREAKER_OPEN", 30*time.Second),
		PollInterval:        r.PositiveDuration("WEBHOOK_POLL_INTERVAL", 250*time.Millisecond),
		ResponseLogBytes:    r.IntIn("WEBHOOK_RESPONSE_LOG_BYTES", 512, 0, 65536),
	}
	sched := r.List("WEBHOOK_RETRY_SCHEDULE", nil)
	if len(sched) == 0 {
		cfg.Schedule = delivery.DefaultSchedule()
	}
	for _, f := range sched {
		d, err := time.ParseDuration(strings.TrimSpace(f))
		if err != nil || d < 0 {
			r.Fail("WEBHOOK_RETRY_SCHEDULE: %q is not a duration ≥ 0", f)
			continue
		}
		cfg.Schedule = append(cfg.Schedule, d)
	}
	if cfg.Lease <= cfg.Timeout {
		r.Fail("WEBHOOK_LEASE=%s must exceed WEBHOOK_TIMEOUT=%s", cfg.Lease, cfg.Timeout)
	}
	allow, err := webhook.ParseAllowlist(cfg.AllowPrivate)
	if err != nil {
		r.Fail("WEBHOOK_ALLOW_PRIVATE: %v", err)
	}
	cfg.policy = webhook.Policy{AllowHTTP: cfg.DevMode, Allow: allow}
	cfg.Ops = envconfig.LoadOps(r, envconfig.Ops{LogLevel: "info", Addr: ":9104", ShutdownTimeout: 20 * time.Second})
	return cfg, r.Err()
}

// Delivery returns the service's part of the configuration.
func (c config) Delivery() delivery.Config {
	return delivery.Config{
		Brokers:             c.Kafka.Brokers,
		DLQTopic:            c.DLQTopic,
		OpsTopic:            c.OpsTopic,
		MaxPollRecords:      c.MaxPollRecords,
		Schedule:            c.Schedule,
		Timeout:             c.Timeout,
		Lease:               c.Lease,
		MaxInFlight:         c.MaxInFlight,
		EndpointConcurrency: c.EndpointConcurrency,
		BreakerFailures:     uint32(c.BreakerFailures),
		BreakerOpen:         c.BreakerOpen,
		PollInterval:        c.PollInterval,
		ResponseLogBytes:    c.ResponseLogBytes,
		Policy:              c.policy,
	}
}

// LogValue is the configuration as it is logged, the database password
// redacted. Endpoint secrets live in the database and never pass here.
func (c config) LogValue() slog.Value {
	sched := make([]string, len(c.Schedule))
	for i, d := range c.Schedule {
		sched[i] = d.String()
	}
	return slog.GroupValue(
		slog.Any("postgres", c.Postgres),
		slog.Any("kafka", c.Kafka),
		slog.Any("ops", c.Ops),
		slog.String("consumer_group", delivery.Group),
		slog.Bool("dev_mode", c.DevMode),
		slog.String("allow_private", c.AllowPrivate),
		slog.String("dlq_topic", c.DLQTopic),
		slog.String("ops_topic", c.OpsTopic),
		slog.String("retry_schedule", strings.Join(sched, ",")),
		slog.String("timeout", c.Timeout.String()),
		slog.String("lease", c.Lease.String()),
		slog.Int("max_in_flight", c.MaxInFlight),
		slog.Int("endpoint_concurrency", c.EndpointConcurrency),
		slog.Int("breaker_failures", c.BreakerFailures),
		slog.String("breaker_open", c.BreakerOpen.String()),
		slog.String("poll_interval", c.PollInterval.String()),
		slog.Int("response_log_bytes", c.ResponseLogBytes),
	)
}
