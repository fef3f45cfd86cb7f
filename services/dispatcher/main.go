// Command dispatcher consumes payments.requested, calls the payment processor
// at a paced rate and publishes each payment's outcome to payments.outcomes,
// committing outcomes and consumed offsets in one Kafka transaction.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/finsvc/finance/pkg/kafka"
	"github.com/finsvc/finance/pkg/obs"
	"github.com/finsvc/finance/pkg/postgres"
	"github.com/finsvc/finance/services/dispatcher/internal/dispatcher"
	"github.com/finsvc/finance/services/dispatcher/internal/guard"
	"github.com/finsvc/finance/services/dispatcher/internal/pacer"
	"github.com/finsvc/finance/services/dispatcher/internal/processor"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Getenv, os.Stdout); err != nil {
		slog.New(slog.NewJSONHandler(os.Stderr, nil)).Error("dispatcher failed", "service", "dispatcher", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, getenv func(string) string, stdout io.Writer) error {
	cfg, err := loadConfig(getenv)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	logger, err := obs.NewLogger(stdout, cfg.LogLevel, "dispatcher")
	if err != nil {
		return err
	}
	logger.InfoContext(ctx, "starting", "config", cfg)
	kafkaLogger := quiet(logger, cfg.LogLevel)
	reg := obs.NewRegistry()

	// The early client publishes best-effort PROCESSING outcomes outside the
	// transaction; it also answers /readyz and reads the group's lag. Topics
	// are created by financectl, not by every replica at boot.
	early, err := kafka.NewClient(cfg.KafkaBrokers, kafkaLogger, kgo.ClientID("dispatcher-early"))
	if err != nil {
		return err
	}
	defer func() {
		fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = early.Flush(fctx)
		early.Close()
	}()

	pm := processor.NewMetrics(reg)
	pace := pacer.New(pacer.Config{
		Limit:     cfg.ProcessorRateLimit,
		StartRate: cfg.ProcessorStartRate,
		Metrics:   pacer.NewMetrics(reg),
	})
	proc, err := processor.New(processor.Config{
		BaseURL:     cfg.ProcessorURL,
		API:         processor.API(cfg.ProcessorAPI),
		Timeout:     cfg.ProcessorTimeout,
		MaxAttempts: cfg.ProcessorMaxAttempts,
		Pacer:       pace,
		Breaker: processor.NewBreaker(processor.BreakerConfig{
			Failures: cfg.BreakerFailures,
			OpenFor:  cfg.BreakerOpen,
			Metrics:  pm,
			Logger:   logger,
		}),
		MaxConns: cfg.MaxInFlight,
		Metrics:  pm,
		Logger:   logger,
	})
	if err != nil {
		return err
	}
	// The dispatch guard: only payments this database holds, not final yet,
	// are sent. The as-is API has no idempotency key: there every payment
	// is also claimed before its first call and sent only by its claimant.
	// With the proposed API a payment that may have been sent is not sent
	// again once its key may have expired.
	pool, err := postgres.Connect(ctx, cfg.DatabaseURL, int32(min(cfg.MaxInFlight, 32)))
	if err != nil {
		return fmt.Errorf("database (dispatch guard): %w", err)
	}
	defer pool.Close()
	admit := guard.New(pool, cfg.TransactionalID, cfg.ProcessorAPI == string(processor.APIAsIs), logger)
	admit.KeyRetention = cfg.ProcessorKeyRetention
	admit.RetryFor = cfg.GuardRetryFor
	d, err := dispatcher.New(dispatcher.Config{
		Brokers:         cfg.KafkaBrokers,
		Group:           cfg.Group,
		TransactionalID: cfg.TransactionalID,
		MaxInFlight:     cfg.MaxInFlight,
		MaxBuffered:     cfg.MaxBuffered,
		MaxPollRecords:  cfg.MaxPollRecords,
		CommitInterval:  cfg.CommitInterval,
		Grace:           cfg.ShutdownGrace,
		Guard:           admit,
	}, early, proc, pace, kafkaLogger, logger, dispatcher.NewMetrics(reg))
	if err != nil {
		return err
	}
	// Closing leaves the group so its partitions move on at once.
	defer d.Close()

	ready := func(ctx context.Context) error { return kafka.Ping(ctx, early) }
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		return obs.Serve(gctx, logger, "ops", cfg.OpsAddr, obs.OpsMux(reg, ready), 5*time.Second)
	})
	g.Go(func() error {
		d.ReportBacklog(gctx, kadm.NewClient(early), 5*time.Second, pace.Rate)
		return nil
	})
	g.Go(func() error {
		pace.Report(gctx, time.Second)
		return nil
	})
	g.Go(func() error { return d.Run(gctx) })
	if err := g.Wait(); err != nil {
		return err
	}
	logger.Info("stopped")
	return nil
}

// quiet keeps the Kafka clients at warn and above unless debugging: at info
// franz-go logs every transaction it begins and ends.
func quiet(logger *slog.Logger, level string) *slog.Logger {
	if level == "debug" {
		return logger
	}
	return slog.New(minLevel{Handler: logger.Handler(), min: slog.LevelWarn})
}

type minLevel struct {
	slog.Handler
	min slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(attrs []slog.Attr) slog.Handler {
	return minLevel{Handler: h.Handler.WithAttrs(attrs), min: h.min}
}

func (h minLevel) WithGroup(name string) slog.Handler {
	return minLevel{Handler: h.Handler.WithGroup(name), min: h.min}
}
