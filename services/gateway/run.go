package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/finsvc/finance/pkg/auth"
	"github.com/finsvc/finance/pkg/dlq"
	"github.com/finsvc/finance/pkg/kafka"
	"github.com/finsvc/finance/pkg/obs"
	"github.com/finsvc/finance/pkg/webhook"
	"github.com/finsvc/finance/services/gateway/internal/abuse"
	"github.com/finsvc/finance/services/gateway/internal/cache"
	"github.com/finsvc/finance/services/gateway/internal/console"
	"github.com/finsvc/finance/services/gateway/internal/httpapi"
	"github.com/finsvc/finance/services/gateway/internal/push"
	"github.com/finsvc/finance/services/gateway/internal/store"
	"github.com/finsvc/finance/services/gateway/internal/tokencache"
)

// run starts the gateway and serves until ctx ends, then drains in-flight
// requests within the shutdown grace period.
func run(ctx context.Context, _ []string, getenv func(string) string, stdout, _ io.Writer) error {
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	logger, err := obs.Start(ctx, stdout, "gateway", cfg.Ops, cfg)
	if err != nil {
		return err
	}
	stopTracing, err := obs.StartTracing(ctx, logger, "gateway", getenv)
	if err != nil {
		return err
	}
	defer stopTracing()
	if cfg.Auth.UsingDevSecret {
		logger.WarnContext(ctx, "FINANCE_DEV_MODE: AUTH_JWT_SECRET is unset, using the public dev secret; "+
			"anyone can mint tokens for this gateway. Never run it like this outside a developer machine.")
	}

	verifier, err := auth.New(ctx, cfg.Auth, logger)
	if err != nil {
		return fmt.Errorf("token verifier: %w", err)
	}
	defer verifier.Close()

	pool, err := cfg.Postgres.Connect(ctx)
	if err != nil {
		return fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	defer pool.Close()

	// The admin dead-letter routes need Kafka; without KAFKA_BROKERS they
	// answer 503 and the gateway runs as before.
	kafkaSec, err := kafka.SecurityOpts(cfg.Kafka.Security)
	if err != nil {
		return err
	}
	var dlqOp *dlq.Operator
	if len(cfg.Kafka.Brokers) > 0 {
		dlqOp, err = dlq.NewOperator(cfg.Kafka.Brokers, pool, logger, kafkaSec...)
		if err != nil {
			return fmt.Errorf("kafka client for the admin DLQ routes: %w", err)
		}
		defer dlqOp.Close()
	}

	reg := obs.NewRegistry()
	batchSize := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "gateway_accept_batch_size",
		Help:    "Payments accepted per group-commit transaction.",
		Buckets: prometheus.ExponentialBuckets(1, 2, 14),
	})
	reg.MustRegister(batchSize)

	// Push (long-polls, event streams): each instance reads payments.events
	// on its own, with no consumer group, so it sees every event. Without
	// KAFKA_BROKERS long-polls answer at once and streams answer 503.
	var (
		hub       *push.Hub
		hubClient *kgo.Client
	)
	if len(cfg.Kafka.Brokers) > 0 {
		hub = push.New(push.Config{Logger: logger, Registry: reg, MaxSubscribers: cfg.PushMaxOpen,
			Buffer: cfg.PushBuffer, RecentEvents: cfg.PushRecent})
		hubClient, err = push.NewClient(cfg.Kafka.Brokers, obs.QuietKafka(logger, cfg.Ops.LogLevel), time.Now(),
			slices.Concat(kafkaSec, []kgo.Opt{kafka.Metrics(reg, "gateway-push")})...)
		if err != nil {
			return fmt.Errorf("kafka client for push: %w", err)
		}
		defer hubClient.Close()
	}
	st := store.New(pool)
	// A replica serves feed pages once it has replayed the user's
	// event_seq (internal/store/replica.go); without one, the primary.
	if cfg.ReadPostgres.URL.Reveal() != "" {
		readPool, err := cfg.ReadPostgres.Connect(ctx)
		if err != nil {
			return fmt.Errorf("connect to the read replica (DATABASE_READ_URL): %w", err)
		}
		defer readPool.Close()
		st.SetReplica(readPool)
	}
	tokens := tokencache.New(verifier, tokencache.Config{MaxEntries: cfg.TokenCacheMaxEntries, TTL: cfg.TokenCacheTTL, Registry: reg})
	readCache := cache.New(cache.Config{MaxBytes: int64(cfg.CacheMaxBytes), MaxEntries: cfg.CacheMaxEntries, Registry: reg})
	// The batch workers outlive the HTTP server: requests still being
	// drained at shutdown get their answers.
	batchCtx, stopBatching := context.WithCancel(context.WithoutCancel(ctx))
	waitBatching := st.StartBatching(batchCtx, store.BatchConfig{
		Workers:  cfg.AcceptWorkers,
		MaxBatch: cfg.AcceptMaxBatch,
		Linger:   cfg.AcceptLinger,
		Timeout:  cfg.RequestTimeout,
		Logger:   logger,
		Observe:  func(n int) { batchSize.Observe(float64(n)) },
	})
	defer func() { stopBatching(); waitBatching() }()

	// The operator console (/console): the same token check as the API,
	// the DLQ operator, the webhook store, and the processor for resolving.
	reconcilePool, closeReconcile, err := cfg.Console.connectReconcile(ctx)
	if err != nil {
		return err
	}
	defer closeReconcile()
	webhooks := webhook.NewStore(pool)
	var con *console.Console // nil: GATEWAY_CONSOLE=false, no /console routes
	if cfg.Console.Enabled {
		con, err = console.New(console.Config{
			Logger: logger, Pool: pool, ReconcilePool: reconcilePool, Verify: tokens.FromHeader,
			DLQ: dlqOp, Webhooks: webhooks, ProcessorURL: cfg.Console.ProcessorURL,
			ProcessorStatementURL: cfg.Console.ProcessorStatementURL, RateLimit: cfg.Console.RateLimit,
			InsecureCookie: cfg.DevMode,
		})
		if err != nil {
			return err
		}
	}

	// An address that keeps getting refused is shut out for a while, at
	// the listener and in front of the API (internal/abuse).
	guard := abuse.New(cfg.Block, cfg.Limits.MaxKeys, nil, reg)
	handler := httpapi.New(httpapi.Config{
		Logger:         logger,
		Store:          st,
		Verifier:       verifier,
		Tokens:         tokens,
		Registry:       reg,
		RequestTimeout: cfg.RequestTimeout,
		DLQ:            dlqOp,
		AdminTimeout:   cfg.AdminTimeout,
		Hub:            hub,
		WaitMax:        cfg.WaitMax,
		Heartbeat:      cfg.Heartbeat,
		Cache:          readCache,
		Limits:         cfg.Limits,
		Guard:          guard,
		Log:            cfg.Log,
		Webhooks:       webhooks,
		WebhookPolicy:  cfg.WebhookPolicy(),
		Console:        con,
	})

	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen on HTTP_ADDR %s: %w", cfg.HTTPAddr, err)
	}
	// The ops port (OPS_ADDR, optional): /loglevel to change the log level
	// at runtime, pprof, and the same /metrics, /healthz and /readyz as
	// the public port, off the API's listener, its limits and its logs.
	var opsLn net.Listener
	if cfg.Ops.Addr != "" {
		if opsLn, err = net.Listen("tcp", cfg.Ops.Addr); err != nil {
			ln.Close()
			return fmt.Errorf("listen on OPS_ADDR %s: %w", cfg.Ops.Addr, err)
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		return obs.ServeListener(gctx, logger, "http", guard.Listener(ln), guard.Handler(handler), cfg.Ops.HTTP, cfg.Ops.ShutdownTimeout)
	})
	if opsLn != nil {
		ops := obs.OpsMux(reg, st.Ping, obs.WithLogLevel(logger))
		g.Go(func() error {
			return obs.ServeListener(gctx, logger, "ops", opsLn, ops, cfg.Ops.HTTP, cfg.Ops.ShutdownTimeout)
		})
	}
	if hub != nil {
		g.Go(func() error { return hub.Consume(gctx, hubClient) })
		// Open long-polls answer and streams end with a retry hint as soon
		// as shutdown begins, well before the server's grace period ends.
		g.Go(func() error { <-gctx.Done(); hub.Drain(); return nil })
	}
	if err := g.Wait(); err != nil {
		return err
	}
	logger.InfoContext(ctx, "stopped")
	return nil
}
