package cli

import (
	"context"
	"flag"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"golang.org/x/sync/errgroup"

	"github.com/finsvc/finance/pkg/kafka"
	"github.com/finsvc/finance/pkg/obs"
	"github.com/finsvc/finance/pkg/reconcile"
)

// reconcileFlags are the flags of a reconciliation pass, shared by
// reconcile and after-restore.
type reconcileFlags struct {
	cfg  reconcile.Config
	proc processorFlags
	api  string
}

func (f *reconcileFlags) register(fs *flag.FlagSet) {
	f.cfg = reconcile.DefaultConfig()
	f.proc.register(fs)
	fs.StringVar(&f.api, "api", "proposed", "the processor's API: proposed (lookup GET /v2/payments/{key}, then the statement) or as-is (the statement only)")
	fs.DurationVar(&f.cfg.SafetyBound, "safety-bound", f.cfg.SafetyBound,
		"how long after a payment became unknown the processor may still execute it (its max latency + the dispatcher's timeout, with a margin)")
	fs.DurationVar(&f.cfg.KeyRetention, "key-retention", f.cfg.KeyRetention, "how long the processor keeps idempotency keys (a lookup 404 beyond it proves nothing)")
	fs.DurationVar(&f.cfg.ClockSkew, "clock-skew", f.cfg.ClockSkew, "widens every time window, for the processor's clock")
	fs.DurationVar(&f.cfg.StuckAfter, "stuck-after", f.cfg.StuckAfter,
		"also resolve payments accepted or processing this long after their acceptance, when the processor executed or declined them (0: only unknown payments)")
	fs.IntVar(&f.cfg.StuckLookups, "stuck-lookups", f.cfg.StuckLookups, "at most `N` lookups of stuck payments per pass, oldest first (0: the statement only)")
	fs.DurationVar(&f.cfg.Verify.ExecutionBound, "execution-bound", f.cfg.Verify.ExecutionBound, "mismatch report: how long an executed payment may take to succeed here")
}

// validate checks the flags and returns the lookup they name (nil for the
// as-is API).
func (f *reconcileFlags) validate() (reconcile.Lookup, error) {
	if f.api != "proposed" && f.api != "as-is" {
		return nil, usagef("--api %q: want proposed or as-is", f.api)
	}
	if err := positive("safety-bound", f.cfg.SafetyBound); err != nil {
		return nil, err
	}
	if err := positive("key-retention", f.cfg.KeyRetention); err != nil {
		return nil, err
	}
	if f.cfg.ClockSkew < 0 || f.cfg.StuckAfter < 0 || f.cfg.StuckLookups < 0 {
		return nil, usagef("--clock-skew, --stuck-after and --stuck-lookups must not be negative")
	}
	if f.api == "proposed" {
		return &reconcile.HTTPLookup{BaseURL: f.proc.url}, nil
	}
	return nil, nil
}

func reconcileCommand() *command {
	var (
		rf          reconcileFlags
		watch       time.Duration
		metricsAddr string
		lagGroups   string
		dlqTopics   string
		asJSON      bool
	)
	return &command{
		name: "reconcile",
		args: "[--dry-run] [--watch 30s] [--api proposed|as-is] [--json]",
		summary: "resolve unknown payments, and payments accepted or processing past --stuck-after, from the processor's records " +
			"(lookup by key, statement of executions), audited as actor \"reconciler\"; list executions without payment and " +
			"report every mismatch; --watch repeats it",
		flags: func(*env) *flag.FlagSet {
			fs := newFlagSet("reconcile")
			rf.register(fs)
			fs.BoolVar(&rf.cfg.DryRun, "dry-run", false, "decide and report, change nothing")
			fs.DurationVar(&watch, "watch", 0, "run a pass every `interval` until stopped (the periodic job); 0 runs once")
			fs.StringVar(&metricsAddr, "metrics-addr", "",
				"with --watch: serve Prometheus /metrics, /healthz and /readyz on this `address`, e.g. :9104 (empty: none)")
			fs.StringVar(&lagGroups, "lag-groups", DefaultLagGroups,
				"with --metrics-addr: the consumer `groups` (comma-separated) whose lag is reported, with the dead-letter topics' depth, from KAFKA_BROKERS (empty: no Kafka metrics)")
			fs.StringVar(&dlqTopics, "dlq-topics", DefaultDLQTopics(),
				"with --metrics-addr: the dead-letter `topics` (comma-separated) whose depth is reported (empty: none)")
			fs.BoolVar(&asJSON, "json", false, "print each report as JSON")
			return fs
		},
		run: func(ctx context.Context, e *env, fs *flag.FlagSet) error {
			if err := noArgs(fs); err != nil {
				return err
			}
			lookup, err := rf.validate()
			if err != nil {
				return err
			}
			if watch < 0 {
				return usagef("--watch must not be negative")
			}
			if metricsAddr != "" && watch == 0 {
				return usagef("--metrics-addr needs --watch")
			}
			cfg, proc := rf.cfg, rf.proc
			// Each resolution's event and admin_audit row, in its
			// transaction (a dry run writes neither).
			a := newAudit(e, "reconcile")
			cfg.Emit = a.emit
			// A watching reconciler keeps the statement it loaded and reads
			// only what the processor executed since its last pass.
			cfg.KeepStatement = watch > 0
			pool, err := connect(ctx, e.cfg.Postgres)
			if err != nil {
				return err
			}
			defer pool.Close()
			rc := reconcile.New(pool, proc.statement(), lookup, cfg)
			defer rc.Close()
			if watch == 0 {
				rep, err := rc.Run(ctx)
				if err != nil {
					return a.resolveFailed(ctx, pool, err)
				}
				return writeReport(e.stdout, asJSON, rep, rep.WriteText)
			}

			// The periodic job: one JSON log line per pass on stderr, the
			// report on stdout; a failed pass is logged and retried.
			logger, err := obs.NewLogger(e.stderr, "info", "financectl-reconcile")
			if err != nil {
				return err
			}
			logger.InfoContext(ctx, "reconciler watching", "interval", watch.String(), "api", rf.api,
				"processor_url", proc.url, "dry_run", cfg.DryRun, "safety_bound", cfg.SafetyBound.String(),
				"key_retention", cfg.KeyRetention.String(), "stuck_after", cfg.StuckAfter.String(), "metrics_addr", metricsAddr)
			return watchReconcile(ctx, e, logger, pool, rc, a, watch, metricsAddr,
				parseGroups(lagGroups), parseGroups(dlqTopics), asJSON)
		},
	}
}

// watchReconcile runs a pass every interval until ctx ends and, when
// metricsAddr is set, serves the reconciler's metrics there, refreshed after
// every pass (failed passes included: the payments' liveness is read from
// the database alone).
func watchReconcile(ctx context.Context, e *env, logger *slog.Logger, pool *pgxpool.Pool, rc *reconcile.Reconciler, a audit,
	every time.Duration, metricsAddr string, lagGroups, dlqTopics []string, asJSON bool,
) error {
	g, gctx := errgroup.WithContext(ctx)
	var (
		metrics  *reconcileMetrics
		kmetrics *kafkaMetrics
		adm      *kadm.Client
	)
	if metricsAddr != "" {
		reg := obs.NewRegistry()
		metrics = newReconcileMetrics(reg)
		if err := metrics.refreshOpen(gctx, pool); err != nil {
			logger.ErrorContext(gctx, "refresh metrics", "err", err)
		}
		if len(lagGroups)+len(dlqTopics) > 0 && len(e.cfg.Kafka.Brokers) > 0 {
			sec, err := kafka.SecurityOpts(e.cfg.Kafka.Security)
			if err != nil {
				return err
			}
			cl, err := kafka.NewClient(e.cfg.Kafka.Brokers, obs.QuietKafka(logger, "info"),
				append(sec, kafka.Metrics(reg, "reconciler"))...)
			if err != nil {
				return err
			}
			defer cl.Close()
			adm = kadm.NewClient(cl)
			kmetrics = newKafkaMetrics(reg, lagGroups, dlqTopics)
			if err := kmetrics.refresh(gctx, adm, pool); err != nil {
				logger.ErrorContext(gctx, "refresh kafka metrics", "err", err)
			}
		}
		mux := obs.OpsMux(reg, func(ctx context.Context) error { return pool.Ping(ctx) }, obs.WithLogLevel(logger))
		g.Go(func() error { return obs.Serve(gctx, logger, "metrics", metricsAddr, mux, e.cfg.HTTP, 5*time.Second) })
	}
	g.Go(func() error {
		return rc.Watch(gctx, every, func(rep reconcile.Report, err error) {
			if metrics != nil {
				metrics.pass(rep, err)
				if err := metrics.refreshOpen(gctx, pool); err != nil {
					logger.ErrorContext(gctx, "refresh metrics", "err", err)
				}
			}
			if kmetrics != nil {
				if err := kmetrics.refresh(gctx, adm, pool); err != nil {
					logger.ErrorContext(gctx, "refresh kafka metrics", "err", err)
				}
			}
			if err != nil {
				logger.ErrorContext(gctx, "reconcile pass failed", "err", a.resolveFailed(gctx, pool, err))
				return
			}
			level := slog.LevelInfo
			if rep.MismatchCount() > 0 || rep.Left > 0 {
				level = slog.LevelWarn
			}
			logger.Log(gctx, level, "reconcile pass", "unknown", rep.Unknown, "stuck", rep.Stuck, "succeeded", rep.Succeeded,
				"failed", rep.Failed, "left", rep.Left, "lookup_errors", rep.Errors, "mismatches", rep.MismatchCount(),
				"executions_without_payment", rep.WithoutPaymentCount, "executions", rep.Executions)
			if rep.Unknown > 0 || rep.Stuck > 0 || rep.MismatchCount() > 0 {
				if err := writeReport(e.stdout, asJSON, rep, rep.WriteText); err != nil {
					logger.ErrorContext(gctx, "write report", "err", err)
				}
			}
		})
	})
	return g.Wait()
}
