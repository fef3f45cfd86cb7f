// Command outbox-relay publishes the transactional outbox to Kafka: one
// active relay (elected with a PostgreSQL advisory lock) reads outbox rows in
// id order, produces them with the idempotent producer and deletes what Kafka
// acknowledged. See README.md.
package main

import (
	"context"
	"fmt"
	"io"

	"github.com/finsvc/finance/pkg/entry"
	"github.com/finsvc/finance/pkg/kafka"
	"github.com/finsvc/finance/pkg/obs"
	"github.com/finsvc/finance/services/outbox-relay/internal/relay"
)

const service = "outbox-relay"

func main() { entry.Main(service, run) }

// run starts the service and runs it until ctx ends. Its first steps read
// like every service's (config, obs.Start, the pool, the registry), each one
// call to its shared home; what repeats is only their error handling.
func run(ctx context.Context, _ []string, getenv func(string) string, stdout, _ io.Writer) error {
	cfg, err := loadConfig(getenv)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	logger, err := obs.Start(ctx, stdout, service, cfg.Ops, cfg)
	if err != nil {
		return err
	}
	stopTracing, err := obs.StartTracing(ctx, logger, service, getenv)
	if err != nil {
		return err
	}
	defer stopTracing()

	// The pool only samples the backlog; the relay's work runs on its own
	// dedicated connection, which holds the advisory lock.
	pool, err := cfg.Postgres.Connect(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()

	sec, err := kafka.SecurityOpts(cfg.Kafka.Security)
	if err != nil {
		return err
	}
	reg := obs.NewRegistry()
	kc, err := kafka.NewClient(cfg.Kafka.Brokers, logger,
		append(relay.ProducerOpts(cfg.ProduceTimeout), append(sec, kafka.Metrics(reg, service))...)...)
	if err != nil {
		return err
	}
	defer kc.Close()

	r := relay.New(cfg.Relay(), pool, kc, logger, reg)
	ready := func(ctx context.Context) error {
		if err := r.Ready(ctx); err != nil {
			return err
		}
		if err := kafka.Ping(ctx, kc); err != nil {
			return fmt.Errorf("kafka: %w", err)
		}
		return nil
	}

	return obs.RunWorker(ctx, logger, cfg.Ops, reg, ready, r.Run)
}
