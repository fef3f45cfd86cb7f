package cli

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/finsvc/finance/pkg/obs"
)

func vacuumCommand() *command {
	var watch time.Duration
	return &command{
		name: "vacuum",
		args: "[--watch 1m]",
		summary: "VACUUM (ANALYZE) the database: autovacuum's work, for a PostgreSQL server running with it off " +
			"(devstack runs it when it finds one); --watch repeats it",
		flags: func(*env) *flag.FlagSet {
			fs := newFlagSet("vacuum")
			fs.DurationVar(&watch, "watch", 0, "run a pass every `interval` until stopped; 0 runs once")
			return fs
		},
		run: func(ctx context.Context, e *env, fs *flag.FlagSet) error {
			if err := noArgs(fs); err != nil {
				return err
			}
			if watch < 0 {
				return usagef("--watch must not be negative")
			}
			pool, err := connect(ctx, e.cfg.Postgres)
			if err != nil {
				return err
			}
			defer pool.Close()
			if watch == 0 {
				took, err := vacuum(ctx, pool)
				if err != nil {
					return err
				}
				fmt.Fprintf(e.stdout, "vacuumed and analyzed the database in %v\n", took.Round(time.Millisecond))
				return nil
			}

			// The periodic job: one JSON log line per pass; a failed pass is
			// logged and tried again at the next tick.
			logger, err := obs.NewLogger(e.stderr, "info", "financectl-vacuum")
			if err != nil {
				return err
			}
			logger.InfoContext(ctx, "vacuum watching", "interval", watch.String())
			tick := time.NewTicker(watch)
			defer tick.Stop()
			for {
				took, err := vacuum(ctx, pool)
				switch {
				case ctx.Err() != nil:
					return nil
				case err != nil:
					logger.ErrorContext(ctx, "vacuum pass failed", "err", err)
				default:
					logger.InfoContext(ctx, "vacuum pass", "took_ms", took.Milliseconds())
				}
				select {
				case <-ctx.Done():
					return nil
				case <-tick.C:
				}
			}
		},
	}
}

// vacuum runs one VACUUM (ANALYZE) of the database and returns how long it
// took. Without it the outbox (every record deleted once published), the
// wallets and the payments (updated on every transition) pile up dead rows,
// and the planner's statistics of every table stay those of an empty
// database, so queries that should use an index scan whole tables.
// VACUUM takes no lock that blocks reads or writes.
func vacuum(ctx context.Context, pool *pgxpool.Pool) (time.Duration, error) {
	start := time.Now()
	if _, err := pool.Exec(ctx, "VACUUM (ANALYZE)"); err != nil {
		return 0, fmt.Errorf("vacuum: %w", err)
	}
	return time.Since(start), nil
}
