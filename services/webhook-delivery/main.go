// Command webhook-delivery sends signed webhooks of payment changes: it
// consumes payments.events, queues one message per matching endpoint in
// PostgreSQL and delivers each (endpoint, user) lane in order, with retries
// over about a day. See README.md.
package main

import (
	"context"
	"fmt"
	"io"

	"github.com/finsvc/finance/pkg/entry"
	"github.com/finsvc/finance/pkg/kafka"
	"github.com/finsvc/finance/pkg/obs"
	"github.com/finsvc/finance/services/webhook-delivery/internal/delivery"
)

const service = "webhook-delivery"

func main() { entry.Main(service, run) }

// run starts the service and runs it until ctx ends.
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

	pool, err := cfg.Postgres.Connect(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()

	reg := obs.NewRegistry()
	dc := cfg.Delivery()
	if dc.KafkaOpts, err = kafka.SecurityOpts(cfg.Kafka.Security); err != nil {
		return err
	}
	svc, err := delivery.New(dc, pool, logger, reg)
	if err != nil {
		return err
	}
	defer svc.Close()

	ready := func(ctx context.Context) error {
		if err := pool.Ping(ctx); err != nil {
			return fmt.Errorf("postgres: %w", err)
		}
		if err := svc.Ping(ctx); err != nil {
			return fmt.Errorf("kafka: %w", err)
		}
		return nil
	}

	return obs.RunWorker(ctx, logger, cfg.Ops, reg, ready, svc.Run)
}
