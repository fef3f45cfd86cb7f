package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/finsvc/finance/pkg/payment"
	"github.com/finsvc/finance/pkg/postgres"
	"github.com/finsvc/finance/pkg/procstat"
	"github.com/finsvc/finance/pkg/schema"
)

// appName is the application_name of the benchmark's own connections, so
// that the CPU of the dispatchers' backends can be told from theirs.
const appName = "benchdispatch"

// benchPayment is one payment of a scenario: its payments row and the
// PaymentRequested record that names it.
type benchPayment struct {
	id, user, amount int64
	uid              uuid.UUID
}

// database is the benchmark's own PostgreSQL database: created and migrated
// once per run, reseeded for every scenario, dropped at the end.
type database struct {
	serverURL, name string
	// url is the database's URL, the dispatchers' DATABASE_URL.
	url  string
	pool *pgxpool.Pool
}

// createDatabase creates a database of its own on the server of serverURL
// (any database of that server, used to run CREATE and DROP DATABASE) and
// applies pkg/schema's migrations to it.
func createDatabase(ctx context.Context, serverURL string) (*database, error) {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	d := &database{serverURL: serverURL, name: "benchdispatch_" + hex.EncodeToString(b)}
	u, err := url.Parse(serverURL)
	if err != nil {
		return nil, fmt.Errorf("postgres url: %w", err)
	}
	u.Path = "/" + d.name
	d.url = u.String()
	if err := adminExec(ctx, serverURL, "CREATE DATABASE "+pgx.Identifier{d.name}.Sanitize()); err != nil {
		return nil, fmt.Errorf("create database %s on %s: %w", d.name, postgres.RedactURL(serverURL), err)
	}
	cfg, err := pgxpool.ParseConfig(d.url)
	if err != nil {
		_ = d.drop()
		return nil, err
	}
	cfg.MaxConns = 2
	cfg.ConnConfig.RuntimeParams["application_name"] = appName
	if d.pool, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
		_ = d.drop()
		return nil, err
	}
	if _, err := schema.Up(ctx, d.pool); err != nil {
		_ = d.drop()
		return nil, err
	}
	return d, nil
}

// drop closes the pool and drops the database, whatever state the run's
// context is in; WITH (FORCE) ends connections a killed dispatcher left.
func (d *database) drop() error {
	if d.pool != nil {
		d.pool.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return adminExec(ctx, d.serverURL, "DROP DATABASE IF EXISTS "+pgx.Identifier{d.name}.Sanitize()+" WITH (FORCE)")
}

func adminExec(ctx context.Context, url, sql string) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, sql)
	return err
}

// walletBalance is every wallet's balance: far above the holds of any
// scenario's payments (at most 10 debits of 999 per user by default).
const walletBalance = 1_000_000_000

// seed replaces the database's payments with ps, as the gateway would have
// accepted them: merchant 1, one wallet per user holding its debits, and one
// accepted payment per element with its uid. COPY writes the 50,000 rows of
// a drain in about a second.
func (d *database) seed(ctx context.Context, ps []benchPayment) error {
	held := map[int64]int64{}
	for _, p := range ps {
		held[p.user] += payment.HoldFor(p.amount)
	}
	users := make([]int64, 0, len(held))
	holds := make([]int64, 0, len(held))
	for u, h := range held {
		users, holds = append(users, u), append(holds, h)
	}
	err := postgres.InTx(ctx, d.pool, func(tx pgx.Tx) error {
		// CASCADE: whatever a migration adds that references payments.
		if _, err := tx.Exec(ctx, `TRUNCATE merchants, wallets, payments, dispatch_claims CASCADE`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO merchants (id, name) VALUES (1, 'benchdispatch merchant')`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `
			INSERT INTO wallets (user_id, balance, held)
			SELECT u, $3::bigint, h FROM unnest($1::bigint[], $2::bigint[]) AS t (u, h)`,
			users, holds, int64(walletBalance)); err != nil {
			return fmt.Errorf("insert wallets: %w", err)
		}
		n, err := tx.CopyFrom(ctx, pgx.Identifier{"payments"},
			[]string{"id", "uid", "user_id", "merchant_id", "amount", "status", "idempotency_key", "request_hash", "hold"},
			pgx.CopyFromSlice(len(ps), func(i int) ([]any, error) {
				p := ps[i]
				return []any{p.id, p.uid, p.user, int64(1), p.amount, string(payment.StatusAccepted),
					"benchdispatch-" + strconv.FormatInt(p.id, 10), payment.RequestHash(p.user, 1, p.amount),
					payment.HoldFor(p.amount)}, nil
			}))
		if err != nil {
			return fmt.Errorf("copy payments: %w", err)
		}
		if n != int64(len(ps)) {
			return fmt.Errorf("copied %d payments, want %d", n, len(ps))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("seed %d payments: %w", len(ps), err)
	}
	// The server may run without autovacuum: give the planner the
	// statistics of the table the guard reads.
	_, err = d.pool.Exec(ctx, `ANALYZE merchants, wallets, payments`)
	return err
}

// backendCPU returns the CPU seconds (user and system) used so far by each
// backend of the database serving another program than this one (the
// dispatchers' guard), by pid, read from /proc: an error when the server
// runs elsewhere.
func (d *database) backendCPU(ctx context.Context) (map[int32]float64, error) {
	rows, err := d.pool.Query(ctx, `
		SELECT pid FROM pg_stat_activity
		WHERE datname = current_database() AND backend_type = 'client backend'
		  AND application_name <> $1`, appName)
	if err != nil {
		return nil, err
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return nil, err
	}
	out := make(map[int32]float64, len(pids))
	for _, pid := range pids {
		sec, err := procstat.PID(procstat.Dir, int(pid))
		if errors.Is(err, os.ErrNotExist) {
			// Ended meanwhile, or not a process of this machine.
			continue
		}
		if err != nil {
			return nil, err
		}
		out[pid] = sec
	}
	if len(pids) > 0 && len(out) == 0 {
		return nil, errors.New("no backend in this machine's /proc: PostgreSQL runs elsewhere")
	}
	return out, nil
}
