package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/finsvc/finance/services/financectl/internal/seed"
)

// progressEvery limits bulk-seed progress lines to about one per interval.
const progressEvery = time.Second

func seedCommand() *command {
	var (
		demo    bool
		users   int64
		startID int64
		balance int64
		batch   int64
	)
	return &command{
		name: "seed",
		args: "--demo | --users N [--start-id S] [--balance B] [--batch K]",
		summary: "write idempotent demo data (--demo) or N bulk users with a starting balance (--users); " +
			"existing users are skipped, never changed",
		flags: func(*env) *flag.FlagSet {
			fs := newFlagSet("seed")
			fs.BoolVar(&demo, "demo", false, "demo merchants, user 3456 with the challenge's example feed, users 1001..1005 with 100000 each")
			fs.Int64Var(&users, "users", 0, "create `N` users with ids S..S+N-1")
			fs.Int64Var(&startID, "start-id", 1_000_000, "first user id `S` of --users")
			fs.Int64Var(&balance, "balance", 100_000, "starting balance `B` of each --users user, in minor units (0: no entries)")
			fs.Int64Var(&batch, "batch", seed.DefaultBatchSize, "users per transaction for --users")
			return fs
		},
		run: func(ctx context.Context, e *env, fs *flag.FlagSet) error {
			if err := noArgs(fs); err != nil {
				return err
			}
			set := map[string]bool{}
			fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
			if !demo && !set["users"] {
				return usagef("want --demo or --users N")
			}
			opts := seed.UsersOptions{Count: users, StartID: startID, Balance: balance, BatchSize: batch}
			if set["users"] {
				if err := opts.Validate(); err != nil {
					return usagef("%s", strings.ReplaceAll(err.Error(), "\n", "; "))
				}
			} else if set["start-id"] || set["balance"] || set["batch"] {
				return usagef("--start-id, --balance and --batch need --users")
			}

			pool, err := connect(ctx, e.cfg.Postgres)
			if err != nil {
				return err
			}
			defer pool.Close()

			if demo {
				res, err := seed.Demo(ctx, pool)
				if err != nil {
					return err
				}
				for _, m := range res.MerchantConflicts {
					fmt.Fprintf(e.stderr, "financectl seed: warning: merchant %d exists as %q; kept it\n", m.ID, m.Name)
				}
				fmt.Fprintf(e.stdout, "demo: merchants created %d, users created %d, skipped %d (already exist)\n",
					res.MerchantsCreated, res.UsersCreated, res.UsersSkipped)
			}
			if set["users"] {
				start := time.Now()
				last := time.Time{}
				opts.Progress = func(p seed.Progress) {
					if now := time.Now(); now.Sub(last) >= progressEvery || p.Done == p.Total {
						last = now
						fmt.Fprintf(e.stdout, "users %d/%d: created %d, skipped %d (%s)\n",
							p.Done, p.Total, p.Created, p.Skipped, now.Sub(start).Round(time.Millisecond))
					}
				}
				res, err := seed.Users(ctx, pool, opts)
				if err != nil {
					if errors.Is(err, context.Canceled) {
						fmt.Fprintf(e.stdout, "interrupted: created %d, skipped %d; committed batches stay, run again to finish\n",
							res.Created, res.Skipped)
					}
					return err
				}
				fmt.Fprintf(e.stdout, "users: created %d, skipped %d (already exist), ids %d..%d, balance %d, in %s\n",
					res.Created, res.Skipped, opts.StartID, opts.StartID+opts.Count-1, opts.Balance,
					time.Since(start).Round(time.Millisecond))
			}
			return nil
		},
	}
}
