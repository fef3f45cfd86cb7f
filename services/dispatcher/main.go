// Command dispatcher consumes payments.requested, calls the payment processor
// at a paced rate and publishes each payment's outcome to payments.outcomes,
// committing outcomes and consumed offsets in one Kafka transaction.
package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/finsvc/finance/pkg/entry"
	"github.com/finsvc/finance/pkg/kafka"
	"github.com/finsvc/finance/pkg/obs"
	"github.com/finsvc/finance/services/dispatcher/internal/dispatcher"
	"github.com/finsvc/finance/services/dispatcher/internal/guard"
	"github.com/finsvc/finance/services/dispatcher/internal/pacer"
	"github.com/finsvc/finance/services/dispatcher/internal/processor"
)

func main() { entry.Main("dispatcher", run) }

// run starts the dispatcher and runs it until ctx ends.
func run(ctx context.Context, _ []string, getenv func(string) string, stdout, _ io.Writer) error {
	cfg, err := loadConfig(getenv)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	logger, err := obs.Start(ctx, stdout, "dispatcher", cfg.Ops, cfg)
	if err != nil {
		return err
	}
	stopTracing, err := obs.StartTracing(ctx, logger, "dispatcher", getenv)
	if err != nil {
		return err
	}
	defer stopTracing()
	kafkaLogger := obs.QuietKafka(logger, cfg.Ops.LogLevel)
	reg := obs.NewRegistry()

	// The early client publishes best-effort PROCESSING outcomes outside the
	// transaction; it also answers /readyz and reads the group's lag. Topics
	// are created by financectl, not by every replica at boot.
	sec, err := kafka.SecurityOpts(cfg.Kafka.Security)
	if err != nil {
		return err
	}
	early, err := kafka.NewClient(cfg.Kafka.Brokers, kafkaLogger,
		slices.Concat(sec, []kgo.Opt{kgo.ClientID("dispatcher-early"), kafka.Metrics(reg, "dispatcher-early")})...)
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
		BatchMax:      cfg.ProcessorBatchMax,
		BatchInFlight: cfg.ProcessorBatchInFlight,
		MaxConns:      cfg.MaxInFlight,
		Metrics:       pm,
		Logger:        logger,
	})
	if err != nil {
		return err
	}
	// The dispatch guard: only payments this database holds, not final yet,
	// are sent. The as-is API has no idempotency key: there every payment
	// is also claimed before its first call and sent only by its claimant.
	// With the proposed API a payment that may have been sent is not sent
	// again once its key may have expired.
	pool, err := cfg.Postgres.Connect(ctx)
	if err != nil {
		return fmt.Errorf("database (dispatch guard): %w", err)
	}
	defer pool.Close()
	admit := guard.New(pool, cfg.TransactionalID, cfg.ProcessorAPI == string(processor.APIAsIs), logger)
	admit.KeyRetention = cfg.ProcessorKeyRetention
	admit.RetryFor = cfg.GuardRetryFor
	d, err := dispatcher.New(dispatcher.Config{
		Brokers:           cfg.Kafka.Brokers,
		KafkaOpts:         slices.Concat(sec, []kgo.Opt{kafka.Metrics(reg, "dispatcher")}),
		Group:             cfg.Group,
		TransactionalID:   cfg.TransactionalID,
		MaxInFlight:       cfg.MaxInFlight,
		MaxBuffered:       cfg.MaxBuffered,
		MaxPollRecords:    cfg.MaxPollRecords,
		CommitInterval:    cfg.CommitInterval,
		MinCommitInterval: cfg.CommitMinInterval,
		Grace:             cfg.Ops.ShutdownTimeout,
		Guard:             admit,
	}, early, proc, pace, kafkaLogger, logger, dispatcher.NewMetrics(reg))
	if err != nil {
		return err
	}
	// Closing leaves the group so its partitions move on at once.
	defer d.Close()

	ready := func(ctx context.Context) error { return kafka.Ping(ctx, early) }
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		return obs.Serve(gctx, logger, "ops", cfg.Ops.Addr, obs.OpsMux(reg, ready, obs.WithLogLevel(logger)), cfg.Ops.HTTP, 5*time.Second)
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
