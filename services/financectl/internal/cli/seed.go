package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/finsvc/finance/services/financectl/internal/seed"
)

// progressEvery limits bulk-seed progress lines to about one per interval.
const progressEvery = time.Second

// seedProgress shows how far a bulk seed has come on stderr: a progress bar
// when stderr is a terminal, else a plain line about once a second (logs,
// CI and pipes get no control characters).
type seedProgress struct {
	w           io.Writer
	bar         *progressbar.ProgressBar // nil: plain lines
	start       time.Time
	last        time.Time
	prevEntries int64
}

func newSeedProgress(w io.Writer, total int64) *seedProgress {
	p := &seedProgress{w: w, start: time.Now()}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.bar = progressbar.NewOptions64(total,
			progressbar.OptionSetWriter(w),
			progressbar.OptionSetDescription("seeding users"),
			progressbar.OptionShowCount(),
			progressbar.OptionShowIts(),
			progressbar.OptionSetItsString("users"),
			progressbar.OptionThrottle(200*time.Millisecond),
			progressbar.OptionFullWidth(),
		)
	}
	return p
}

func (p *seedProgress) update(s seed.Progress) {
	if p.bar != nil {
		p.bar.Describe(fmt.Sprintf("seeding users (%d settled payments)", s.Entries))
		_ = p.bar.Set64(s.Done)
		return
	}
	if now := time.Now(); now.Sub(p.last) >= progressEvery || s.Done == s.Total {
		p.last = now
		fmt.Fprintf(p.w, "users %d/%d: created %d, skipped %d, settled payments %d (%s)\n",
			s.Done, s.Total, s.Created, s.Skipped, s.Entries, now.Sub(p.start).Round(time.Millisecond))
	}
}

func (p *seedProgress) finish() {
	if p.bar != nil {
		_ = p.bar.Finish()
		fmt.Fprintln(p.w)
	}
}

func seedCommand() *command {
	var (
		demo    bool
		users   int64
		startID int64
		balance int64
		batch   int64
		perUser int64
		workers int
		fks     bool
	)
	return &command{
		name: "seed",
		args: "--demo | --users N [--payments-per-user M] [--start-id S] [--balance B] [--batch K] [--workers W] [--check-fks]",
		summary: "write idempotent demo data (--demo) or N bulk users with M settled payments each (--users, with COPY); " +
			"existing users are skipped, never changed",
		flags: func(*env) *flag.FlagSet {
			fs := newFlagSet("seed")
			fs.BoolVar(&demo, "demo", false, "demo merchants, user 3456 with the challenge's example feed, users 1001..1005 with 100000 each")
			fs.Int64Var(&users, "users", 0, "create `N` users with ids S..S+N-1")
			fs.Int64Var(&startID, "start-id", 1_000_000, "first user id `S` of --users")
			fs.Int64Var(&balance, "balance", 100_000, "starting balance `B` of each --users user, in minor units (0: no entries)")
			fs.Int64Var(&batch, "batch", seed.DefaultBatchSize, "users per transaction for --users")
			fs.IntVar(&workers, "workers", seed.DefaultWorkers, "batches written at once, each on its own connection")
			fs.BoolVar(&fks, "check-fks", false, "keep PostgreSQL's row-by-row foreign key checks even as a superuser (4x slower)")
			fs.Int64Var(&perUser, "payments-per-user", 1, "settled payments `M` of each --users user: the starting balance B, then debits and top-ups")
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
			opts := seed.UsersOptions{Count: users, StartID: startID, Balance: balance, BatchSize: batch, PaymentsPerUser: perUser,
				Workers: workers, CheckFKs: fks}
			if set["users"] {
				if err := opts.Validate(); err != nil {
					return usagef("%s", strings.ReplaceAll(err.Error(), "\n", "; "))
				}
			} else if set["start-id"] || set["balance"] || set["batch"] || set["payments-per-user"] || set["workers"] || set["check-fks"] {
				return usagef("--start-id, --balance, --batch, --payments-per-user, --workers and --check-fks need --users")
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
				progress := newSeedProgress(e.stderr, opts.Count)
				opts.Progress = progress.update
				res, err := seed.Users(ctx, pool, opts)
				progress.finish()
				if err != nil {
					if errors.Is(err, context.Canceled) {
						fmt.Fprintf(e.stdout, "interrupted: created %d, skipped %d; committed batches stay, run again to finish\n",
							res.Created, res.Skipped)
					}
					return err
				}
				took := time.Since(start)
				vacuumed := ""
				if res.Created > 0 {
					vstart := time.Now()
					if err := seed.Analyze(ctx, pool); err != nil {
						return err
					}
					vacuumed = fmt.Sprintf(", then vacuum (analyze) in %s", time.Since(vstart).Round(time.Millisecond))
				}
				fmt.Fprintf(e.stdout, "users: created %d, skipped %d (already exist), ids %d..%d, balance %d, %d settled payments, in %s%s\n",
					res.Created, res.Skipped, opts.StartID, opts.StartID+opts.Count-1, opts.Balance, res.Entries,
					took.Round(time.Millisecond), vacuumed)
			}
			return nil
		},
	}
}
