// Command status-consumer applies the dispatcher's payment outcomes to
// PostgreSQL (status, balance, hold, settled entry, audit trail) and announces
// each change as a PaymentEvent on payments.events. See README.md.
package main

import (
	"context"
	"fmt"
	"io"

	"github.com/finsvc/finance/pkg/entry"
	"github.com/finsvc/finance/pkg/kafka"
	"github.com/finsvc/finance/pkg/obs"
	"github.com/finsvc/finance/services/status-consumer/internal/consumer"
)

const service = "status-consumer"

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

	pool, err := cfg.Postgres.Connect(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()

	reg := obs.NewRegistry()
	cc := cfg.Consumer()
	if cc.KafkaOpts, err = kafka.SecurityOpts(cfg.Kafka.Security); err != nil {
		return err
	}
	cc.KafkaOpts = append(cc.KafkaOpts, kafka.Metrics(reg, service))
	c, err := consumer.New(cc, pool, logger, reg)
	if err != nil {
		return err
	}
	// Leaves the group after Run has committed; deferred after the pool so
	// that it runs before the pool closes.
	defer c.Close()

	ready := func(ctx context.Context) error {
		if err := pool.Ping(ctx); err != nil {
			return fmt.Errorf("postgres: %w", err)
		}
		if err := c.Ping(ctx); err != nil {
			return fmt.Errorf("kafka: %w", err)
		}
		return nil
	}

	return obs.RunWorker(ctx, logger, cfg.Ops, reg, ready, c.Run)
}
