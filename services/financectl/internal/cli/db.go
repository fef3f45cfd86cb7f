package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/finsvc/finance/pkg/postgres"
	"github.com/finsvc/finance/pkg/schema"
)

// connectTimeout bounds opening the pool, so an unreachable server fails
// fast instead of hanging the operator's terminal.
const connectTimeout = 15 * time.Second

func connect(ctx context.Context, pg postgres.Config) (*pgxpool.Pool, error) {
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	pool, err := postgres.Connect(ctx, pg.URL.Reveal(), int32(pg.MaxConns))
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", postgres.RedactURL(pg.URL.Reveal()), err)
	}
	return pool, nil
}

func migrateCommand() *command {
	return &command{
		name:    "migrate",
		args:    "[up|version]",
		summary: "apply the schema migrations to DATABASE_URL (up, the default) or print its schema version",
		run: func(ctx context.Context, e *env, fs *flag.FlagSet) error {
			action := "up"
			switch fs.NArg() {
			case 0:
			case 1:
				action = fs.Arg(0)
			default:
				return usagef("unexpected argument %q", fs.Arg(1))
			}
			if action != "up" && action != "version" {
				return usagef("unknown action %q: want up or version", action)
			}
			pool, err := connect(ctx, e.cfg.Postgres)
			if err != nil {
				return err
			}
			defer pool.Close()
			if action == "version" {
				v, err := schema.Version(ctx, pool)
				if err != nil {
					return fmt.Errorf("schema version: %w", err)
				}
				fmt.Fprintf(e.stdout, "schema version %d\n", v)
				return nil
			}
			_, err = migrateUp(ctx, pool, e.stdout, "")
			return err
		},
	}
}

// migrateUp applies the pending migrations, prints one line saying what
// changed, after prefix (migrate and after-restore both say it), and returns
// the schema version before.
func migrateUp(ctx context.Context, pool *pgxpool.Pool, w io.Writer, prefix string) (before int64, err error) {
	before, err = schema.Version(ctx, pool)
	if err != nil {
		return 0, fmt.Errorf("schema version: %w", err)
	}
	v, err := schema.Up(ctx, pool)
	if err != nil {
		return before, err
	}
	if v == before {
		fmt.Fprintf(w, "%sschema version %d: up to date\n", prefix, v)
	} else {
		fmt.Fprintf(w, "%sschema migrated from version %d to %d\n", prefix, before, v)
	}
	return before, nil
}

func createdbCommand() *command {
	return &command{
		name:    "createdb",
		summary: `create the database named in DATABASE_URL unless it exists (connects to the "postgres" database of the same server)`,
		run: func(ctx context.Context, e *env, fs *flag.FlagSet) error {
			if err := noArgs(fs); err != nil {
				return err
			}
			created, name, err := createDB(ctx, e.cfg.Postgres.URL.Reveal())
			if err != nil {
				return err
			}
			if created {
				fmt.Fprintf(e.stdout, "database %q created\n", name)
			} else {
				fmt.Fprintf(e.stdout, "database %q exists\n", name)
			}
			return nil
		},
	}
}

// createDB creates the database of url through the "postgres" database of the
// same server, and reports whether it had to.
func createDB(ctx context.Context, url string) (created bool, name string, err error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return false, "", usagef("DATABASE_URL: %v", err)
	}
	name = cfg.Database
	if name == "" {
		return false, "", usagef("DATABASE_URL names no database")
	}
	admin := cfg.Copy()
	admin.Database = "postgres"
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, admin)
	if err != nil {
		return false, name, fmt.Errorf("connect to %s: %w", postgres.RedactURL(url), err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		return false, name, fmt.Errorf("look up database %q: %w", name, err)
	}
	if exists {
		return false, name, nil
	}
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P04" { // duplicate_database: someone else won the race
		return false, name, nil
	}
	if err != nil {
		return false, name, fmt.Errorf("create database %q: %w", name, err)
	}
	return true, name, nil
}
