// Package dbtest gives each test its own empty PostgreSQL database holding the
// legacy tables. pgtest's databases cannot be used: they carry the pipeline's
// schema, whose payments table is not the legacy one.
package dbtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/finsvc/finance/pkg/pgtest"
	"github.com/finsvc/finance/services/legacy/internal/store"
)

// NewDB creates an empty database on pgtest's server, dropped when tb ends,
// and returns its URL. The server is PGTEST_URL or pgtest.DefaultURL.
func NewDB(tb testing.TB) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "legacytest_" + hex.EncodeToString(b)
	if err := exec(ctx, pgtest.ServerURL(), "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		tb.Fatalf("dbtest: create database on %s (set PGTEST_URL, or run `make test`): %v", pgtest.ServerURL(), err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := exec(ctx, pgtest.ServerURL(), "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			tb.Logf("dbtest: drop database %s: %v", name, err)
		}
	})
	return pgtest.WithDatabase(pgtest.ServerURL(), name)
}

// NewPool is NewDB with the legacy tables created and an open pool, closed
// when tb ends.
func NewPool(tb testing.TB) *pgxpool.Pool {
	tb.Helper()
	pool, err := pgxpool.New(context.Background(), NewDB(tb))
	if err != nil {
		tb.Fatalf("dbtest: open pool: %v", err)
	}
	tb.Cleanup(pool.Close)
	if err := store.Migrate(context.Background(), pool); err != nil {
		tb.Fatalf("dbtest: %v", err)
	}
	return pool
}

func exec(ctx context.Context, url, sql string) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}
