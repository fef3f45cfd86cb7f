package cli

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/finsvc/finance/pkg/obs"
)

// churnTables are the tables the pipeline rewrites all the time: every
// outbox record is deleted once published, and wallets and payments are
// updated on every transition. Without vacuuming their dead rows pile up and
// every read of them slows down.
var churnTables = []string{"outbox", "wallets", "payments"}

func vacuumCommand() *command {
	var watch time.Duration
	return &command{
		name: "vacuum",
		args: "[--watch 1m]",
		summary: "VACUUM (ANALYZE) the tables the pipeline churns (" + strings.Join(churnTables, ", ") + "); " +
			"for a PostgreSQL server running with autovacuum off, as devstack does when it finds one; --watch repeats it",
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
			pool, err := connect(ctx, e.cfg.DatabaseURL)
			if err != nil {
				return err
			}
			defer pool.Close()
			if watch == 0 {
				took, err := vacuum(ctx, pool)
				if err != nil {
					return err
				}
				fmt.Fprintf(e.stdout, "vacuumed %s in %v\n", strings.Join(churnTables, ", "), took.Round(time.Millisecond))
				return nil
			}

			// The periodic job: one JSON log line per pass; a failed pass is
			// logged and tried again at the next tick.
			logger, err := obs.NewLogger(e.stderr, "info", "financectl-vacuum")
			if err != nil {
				return err
			}
			logger.InfoContext(ctx, "vacuum watching", "interval", watch.String(), "tables", churnTables)
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

// vacuum runs one VACUUM (ANALYZE) of the churn tables and returns how long
// it took. VACUUM takes no lock that blocks reads or writes.
func vacuum(ctx context.Context, pool *pgxpool.Pool) (time.Duration, error) {
	start := time.Now()
	if _, err := pool.Exec(ctx, "VACUUM (ANALYZE) "+strings.Join(churnTables, ", ")); err != nil {
		return 0, fmt.Errorf("vacuum %s: %w", strings.Join(churnTables, ", "), err)
	}
	return time.Since(start), nil
}
