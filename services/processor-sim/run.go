package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/finsvc/finance/pkg/obs"
	"github.com/finsvc/finance/services/processor-sim/internal/httpapi"
	"github.com/finsvc/finance/services/processor-sim/internal/sim"
)

// sweepEvery is how often expired idempotency keys are forgotten.
const sweepEvery = time.Minute

// run starts the simulator and serves it until ctx ends.
func run(ctx context.Context, _ []string, getenv func(string) string, stdout, _ io.Writer) error {
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	logger, err := obs.Start(ctx, stdout, "processor-sim", cfg.Ops, cfg)
	if err != nil {
		return err
	}

	s, err := sim.New(sim.Options{
		Settings: cfg.Sim, KeyTTL: cfg.KeyTTL, Seed: cfg.Seed, DataFile: cfg.DataFile, Logger: logger,
	})
	if err != nil {
		return fmt.Errorf("start simulator: %w", err)
	}
	defer func() {
		if err := s.Close(); err != nil {
			logger.ErrorContext(ctx, "close data file", "err", err)
		}
	}()

	h := httpapi.New(s, logger, obs.NewRegistry())
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		return obs.Serve(gctx, logger, "http", cfg.HTTPAddr, h, cfg.Ops.HTTP, cfg.Ops.ShutdownTimeout)
	})
	g.Go(func() error { return s.RunSweeper(gctx, sweepEvery) })
	if err := g.Wait(); err != nil {
		return err
	}
	logger.InfoContext(ctx, "stopped")
	return nil
}
