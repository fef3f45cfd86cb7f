package cli

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/finsvc/finance/pkg/obs"
)

func vacuumCommand() *command {
	var (
		watch time.Duration
		due   bool
	)
	return &command{
		name: "vacuum",
		args: "[--due] [--watch 1m]",
		summary: "VACUUM (ANALYZE) the database: autovacuum's work, for a PostgreSQL server running with it off " +
			"(devstack runs it when it finds one); --due only the tables past autovacuum's thresholds; --watch repeats that",
		flags: func(*env) *flag.FlagSet {
			fs := newFlagSet("vacuum")
			fs.BoolVar(&due, "due", false, "only the tables autovacuum would vacuum or analyze now, by its default thresholds")
			fs.DurationVar(&watch, "watch", 0, "run a --due pass every `interval` until stopped; 0 runs once")
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
			if watch == 0 && !due {
				took, err := vacuum(ctx, pool)
				if err != nil {
					return err
				}
				fmt.Fprintf(e.stdout, "vacuumed and analyzed the database in %v\n", took.Round(time.Millisecond))
				return nil
			}
			if watch == 0 {
				p, err := vacuumDue(ctx, pool)
				if err != nil {
					return err
				}
				fmt.Fprintf(e.stdout, "vacuumed %s; analyzed %s; in %v\n", tableList(p.vacuumed), tableList(p.analyzed),
					p.took.Round(time.Millisecond))
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
				p, err := vacuumDue(ctx, pool)
				switch {
				case ctx.Err() != nil:
					return nil
				case err != nil:
					logger.ErrorContext(ctx, "vacuum pass failed", "err", err)
				default:
					logger.InfoContext(ctx, "vacuum pass", "took_ms", p.took.Milliseconds(),
						"vacuumed", p.vacuumed, "analyzed", p.analyzed)
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

// duePass is what one vacuumDue did.
type duePass struct {
	vacuumed, analyzed []string
	took               time.Duration
}

// dueSQL lists the tables past autovacuum's default thresholds (PostgreSQL's
// autovacuum_*_threshold and *_scale_factor): dead rows above 50 + 20% of
// the table, or rows inserted since its last vacuum above 1,000 + 20%,
// call for a VACUUM; rows changed since its last analyze above 50 + 10%,
// for an ANALYZE. A table never analyzed counts as empty.
const dueSQL = `
	SELECT format('%I.%I', s.schemaname, s.relname),
	       s.n_dead_tup > 50 + 0.2 * greatest(c.reltuples, 0)
	         OR s.n_ins_since_vacuum > 1000 + 0.2 * greatest(c.reltuples, 0),
	       s.n_mod_since_analyze > 50 + 0.1 * greatest(c.reltuples, 0)
	FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
	ORDER BY 1`

// vacuumDue vacuums and analyzes the tables autovacuum would work on now
// (dueSQL), and only those: a pass over a database of 20,000,000 payments
// whose big tables did not change costs a statement, where VACUUM
// (ANALYZE) of the whole database took 4.5-14 s of a core every minute
// (docs/reads.md, session 18).
func vacuumDue(ctx context.Context, pool *pgxpool.Pool) (duePass, error) {
	p := duePass{vacuumed: []string{}, analyzed: []string{}}
	start := time.Now()
	rows, err := pool.Query(ctx, dueSQL)
	if err != nil {
		return p, fmt.Errorf("read table statistics: %w", err)
	}
	type due struct {
		Table           string
		Vacuum, Analyze bool
	}
	tables, err := pgx.CollectRows(rows, pgx.RowToStructByPos[due])
	if err != nil {
		return p, fmt.Errorf("read table statistics: %w", err)
	}
	for _, t := range tables {
		var sql string
		switch {
		case t.Vacuum && t.Analyze:
			sql = "VACUUM (ANALYZE) " + t.Table
		case t.Vacuum:
			sql = "VACUUM " + t.Table
		case t.Analyze:
			sql = "ANALYZE " + t.Table
		default:
			continue
		}
		if _, err := pool.Exec(ctx, sql); err != nil {
			return p, fmt.Errorf("%s: %w", sql, err)
		}
		if t.Vacuum {
			p.vacuumed = append(p.vacuumed, t.Table)
		}
		if t.Analyze {
			p.analyzed = append(p.analyzed, t.Table)
		}
	}
	p.took = time.Since(start)
	return p, nil
}

// tableList names tables for a person: "none", or them comma-separated.
func tableList(tables []string) string {
	if len(tables) == 0 {
		return "none"
	}
	return strings.Join(tables, ", ")
}
