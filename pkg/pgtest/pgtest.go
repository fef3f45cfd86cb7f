// Package pgtest gives each test its own migrated PostgreSQL database, cloned
// from one template database per test binary.
//
// The server is PGTEST_URL, or postgres://postgres@127.0.0.1:5432/postgres.
// Tests fail, never skip, when it cannot be reached: `make test` starts one.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/finsvc/finance/pkg/schema"
)

// DefaultURL is the server used when PGTEST_URL is unset.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

var (
	tplOnce sync.Once
	tplName string
	tplErr  error
)

// ServerURL returns the admin URL of the test server.
func ServerURL() string {
	if u := os.Getenv("PGTEST_URL"); u != "" {
		return u
	}
	return DefaultURL
}

// Main runs the tests of a package and drops its template database after.
// Use it from TestMain: func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }.
func Main(m *testing.M) int {
	code := m.Run()
	if tplName != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = exec(ctx, ServerURL(), "DROP DATABASE IF EXISTS "+pgx.Identifier{tplName}.Sanitize()+" WITH (FORCE)")
	}
	return code
}

// NewDB creates a fresh migrated database for t, dropped when t ends, and
// returns its URL.
func NewDB(tb testing.TB) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tplOnce.Do(func() { tplName, tplErr = makeTemplate(ctx) })
	if tplErr != nil {
		tb.Fatalf("pgtest: template database: %v", tplErr)
	}
	name := "pgtest_" + randomSuffix()
	if err := exec(ctx, ServerURL(), fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s",
		pgx.Identifier{name}.Sanitize(), pgx.Identifier{tplName}.Sanitize())); err != nil {
		tb.Fatalf("pgtest: create database: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := exec(ctx, ServerURL(), "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			tb.Logf("pgtest: drop database %s: %v", name, err)
		}
	})
	return WithDatabase(ServerURL(), name)
}

// NewPool is NewDB plus an open pool, closed when t ends.
func NewPool(tb testing.TB) *pgxpool.Pool {
	tb.Helper()
	u := NewDB(tb)
	cfg, err := pgxpool.ParseConfig(u)
	if err != nil {
		tb.Fatalf("pgtest: parse url: %v", err)
	}
	// Few connections per test: many tests and packages share one server.
	cfg.MaxConns = 4
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		tb.Fatalf("pgtest: open pool: %v", err)
	}
	tb.Cleanup(pool.Close)
	return pool
}

// WithDatabase returns serverURL pointing at database name.
func WithDatabase(serverURL, name string) string {
	u, err := url.Parse(serverURL)
	if err != nil {
		return serverURL
	}
	u.Path = "/" + name
	return u.String()
}

func makeTemplate(ctx context.Context) (string, error) {
	name := "pgtest_tpl_" + randomSuffix()
	if err := exec(ctx, ServerURL(), "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("reach PostgreSQL at %s (set PGTEST_URL, or run `make test`, which starts one): %w", ServerURL(), err)
	}
	pool, err := pgxpool.New(ctx, WithDatabase(ServerURL(), name))
	if err != nil {
		return "", err
	}
	defer pool.Close()
	if _, err := schema.Up(ctx, pool); err != nil {
		return "", err
	}
	return name, nil
}

func exec(ctx context.Context, url, sql string) error {
	conn, err := connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

// connect opens a connection, waiting while the server is out of connection
// slots: test packages run in parallel, and one package's burst of databases
// must not fail another's tests.
func connect(ctx context.Context, url string) (*pgx.Conn, error) {
	for {
		conn, err := pgx.Connect(ctx, url)
		var pgErr *pgconn.PgError
		if err == nil || !errors.As(err, &pgErr) || pgErr.Code != "53300" { // too_many_connections
			return conn, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (server still out of connection slots)", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func randomSuffix() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
