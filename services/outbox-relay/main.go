// Command outbox-relay publishes the transactional outbox to Kafka: one
// active relay (elected with a PostgreSQL advisory lock) reads outbox rows in
// id order, produces them with the idempotent producer and deletes what Kafka
// acknowledged. See README.md.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sync/errgroup"

	"github.com/finsvc/finance/pkg/kafka"
	"github.com/finsvc/finance/pkg/obs"
	"github.com/finsvc/finance/pkg/postgres"
	"github.com/finsvc/finance/services/outbox-relay/internal/relay"
)

const service = "outbox-relay"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Getenv, os.Stdout)
	stop()
	if err != nil {
		slog.New(slog.NewJSONHandler(os.Stderr, nil)).Error("outbox-relay failed", "service", service, "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, getenv func(string) string, stdout io.Writer) error {
	cfg, err := loadConfig(getenv)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	logger, err := obs.NewLogger(stdout, cfg.LogLevel, service)
	if err != nil {
		return err
	}
	logger.InfoContext(ctx, "starting", cfg.LogAttrs()...)

	// The pool only samples the backlog; the relay's work runs on its own
	// dedicated connection, which holds the advisory lock.
	pool, err := postgres.Connect(ctx, cfg.DatabaseURL, 2)
	if err != nil {
		return err
	}
	defer pool.Close()

	kc, err := kafka.NewClient(cfg.KafkaBrokers, logger, relay.ProducerOpts(cfg.ProduceTimeout)...)
	if err != nil {
		return err
	}
	defer kc.Close()

	reg := obs.NewRegistry()
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

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		return obs.Serve(gctx, logger, "ops", cfg.OpsAddr, obs.OpsMux(reg, ready), cfg.ShutdownTimeout)
	})
	g.Go(func() error { return r.Run(gctx) })
	err = g.Wait()
	logger.InfoContext(ctx, "stopped", "err", err)
	return err
}
