// Package app wires the as-is Finance Service's commands: serve (the
// default), migrate and seed.
package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/finsvc/finance/pkg/auth"
	"github.com/finsvc/finance/pkg/entry"
	"github.com/finsvc/finance/pkg/obs"
	"github.com/finsvc/finance/pkg/postgres"
	"github.com/finsvc/finance/services/legacy/internal/httpapi"
	"github.com/finsvc/finance/services/legacy/internal/processor"
	"github.com/finsvc/finance/services/legacy/internal/store"
)

// usagef is a wrong invocation: main exits 2.
var usagef = entry.Usagef

const usage = `usage: legacy [serve]                                   serve POST /payment and GET /payment_feed
       legacy migrate                                   create the database and its two tables
       legacy seed [--demo] [--users N --start-id S --balance B]
                                                        write starting balances (top-ups from Pleo)
environment: HTTP_ADDR (:8070), DATABASE_URL, PROCESSOR_URL, LEGACY_PROCESSOR_TIMEOUT (5s),
             DATABASE_MAX_CONNS (20), AUTH_JWT_SECRET, FINANCE_DEV_MODE, LOG_LEVEL, SHUTDOWN_TIMEOUT (10s)`

// Run runs one command (args without the program name) until ctx ends. It
// is the binary's body (pkg/entry).
func Run(ctx context.Context, args []string, getenv func(string) string, stdout, _ io.Writer) error {
	cmd, rest := "serve", args
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, rest = args[0], args[1:]
	}
	switch cmd {
	case "help", "-h", "--help":
		fmt.Fprintln(stdout, usage)
		return nil
	case "serve", "migrate", "seed":
	default:
		return usagef("unknown command %q\n%s", cmd, usage)
	}
	cfg, err := loadConfig(getenv)
	if err != nil {
		return usagef("bad environment: %s", strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	switch cmd {
	case "migrate":
		if len(rest) > 0 {
			return usagef("migrate takes no arguments\n%s", usage)
		}
		return migrate(ctx, cfg, stdout)
	case "seed":
		return seed(ctx, cfg, rest, stdout)
	default:
		if len(rest) > 0 {
			return usagef("serve takes no arguments\n%s", usage)
		}
		return serve(ctx, cfg, stdout)
	}
}

func serve(ctx context.Context, cfg Config, stdout io.Writer) error {
	secret, err := cfg.secret()
	if err != nil {
		return err
	}
	logger, err := obs.Start(ctx, stdout, "legacy", cfg.Ops, cfg)
	if err != nil {
		return err
	}

	pool, err := cfg.Postgres.Connect(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	// The legacy system creates its two tables itself; `legacy migrate` does
	// the same ahead of time.
	if err := store.Migrate(ctx, pool); err != nil {
		return err
	}

	reg := obs.NewRegistry()
	h := httpapi.New(logger, store.New(pool), processor.New(cfg.ProcessorURL, cfg.ProcessorTimeout),
		auth.NewVerifier(secret), reg)
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.HTTPAddr, err)
	}
	err = obs.ServeListener(ctx, logger, "http", ln, h, cfg.Ops.HTTP, cfg.Ops.ShutdownTimeout)
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	logger.Info("stopped")
	return nil
}

func migrate(ctx context.Context, cfg Config, stdout io.Writer) error {
	created, err := store.CreateDatabase(ctx, cfg.Postgres.URL.Reveal())
	if err != nil {
		return err
	}
	if created {
		fmt.Fprintln(stdout, "database created")
	}
	pool, err := openMigrated(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	fmt.Fprintln(stdout, "tables providers and payments are in place")
	return nil
}

func seed(ctx context.Context, cfg Config, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("legacy seed", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var o store.SeedOptions
	fs.BoolVar(&o.Demo, "demo", false, "user 3456 with the challenge's example feed")
	fs.Int64Var(&o.Users, "users", 0, "create `N` users with ids S..S+N-1")
	fs.Int64Var(&o.StartID, "start-id", 1_000_000, "first user id `S` of --users")
	fs.Int64Var(&o.Balance, "balance", 100_000, "starting balance `B` of each --users user, in minor units")
	if err := fs.Parse(args); err != nil {
		return usagef("seed: %v\n%s", err, usage)
	}
	if fs.NArg() > 0 {
		return usagef("seed: unexpected argument %q\n%s", fs.Arg(0), usage)
	}
	if err := o.Validate(); err != nil {
		return usagef("seed: %s", strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	pool, err := openMigrated(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	res, err := store.Seed(ctx, store.New(pool), o)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "providers created %d; users created %d, skipped %d (already have payments)\n",
		res.ProvidersCreated, res.UsersCreated, res.UsersSkipped)
	return nil
}

// openMigrated opens a small pool (migrate and seed are one-off commands)
// and creates the two tables if they are missing.
func openMigrated(ctx context.Context, cfg Config) (*pgxpool.Pool, error) {
	pool, err := postgres.Connect(ctx, cfg.Postgres.URL.Reveal(), 2)
	if err != nil {
		return nil, err
	}
	if err := store.Migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	return pool, nil
}
