// Package postgres opens the PostgreSQL pool, runs transactions through one
// helper and classifies PostgreSQL errors.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Connect opens a pool to url and pings it. Its connections carry the
// program's name (gateway, dispatcher, ...) as application_name, unless url
// sets one, so pg_stat_activity and pg_stat_statements' users can tell the
// services apart.
func Connect(ctx context.Context, url string, maxConns int32) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse database url: %w", err)
	}
	NameConnections(cfg.ConnConfig, filepath.Base(os.Args[0]))
	if maxConns > 0 {
		cfg.MaxConns = maxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open pool: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("ping database: %w", err)
	}
	return pool, nil
}

// NameConnections sets name as cfg's application_name unless its URL set
// one, so that pg_stat_activity and pg_stat_statements can tell the
// services apart.
func NameConnections(cfg *pgx.ConnConfig, name string) {
	if _, ok := cfg.RuntimeParams["application_name"]; !ok {
		cfg.RuntimeParams["application_name"] = name
	}
}

// Beginner is what InTx needs: a pool or a connection.
type Beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// InTx runs fn in a transaction, committing when fn returns nil and rolling
// back otherwise.
func InTx(ctx context.Context, db Beginner, fn func(pgx.Tx) error) error {
	tx, err := db.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// IsUniqueViolation reports whether err is a unique-constraint violation.
func IsUniqueViolation(err error) bool {
	return hasCode(err, "23505")
}

// IsCheckViolation reports whether err is a CHECK-constraint violation.
func IsCheckViolation(err error) bool {
	return hasCode(err, "23514")
}

// IsForeignKeyViolation reports whether err is a foreign-key violation.
func IsForeignKeyViolation(err error) bool {
	return hasCode(err, "23503")
}

// SQLSTATE classes (the first two characters of an error code) whose errors
// refuse the data itself: the same statement with the same data fails the
// same way every time, so retrying cannot fix it.
const (
	// ClassDataException: 22, e.g. bigint out of range (22003), invalid
	// text representation (22P02), string too long (22001).
	ClassDataException = "22"
	// ClassIntegrityConstraintViolation: 23, e.g. not null (23502), foreign
	// key (23503), unique (23505), check (23514), exclusion (23P01).
	ClassIntegrityConstraintViolation = "23"
)

// Class returns the SQLSTATE class of err's PostgreSQL error (the first two
// characters of its code), or "" when err carries none.
func Class(err error) string {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || len(pgErr.Code) < 2 {
		return ""
	}
	return pgErr.Code[:2]
}

func hasCode(err error, code string) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == code
}

// RedactURL returns a database URL fit for logs: its password replaced by
// REDACTED. Anything that is not a URL with a scheme (a keyword/value DSN,
// say) is hidden whole, since it may carry a password anywhere.
func RedactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" {
		return "REDACTED"
	}
	if _, hasPassword := u.User.Password(); hasPassword {
		u.User = url.UserPassword(u.User.Username(), "REDACTED")
	}
	return u.String()
}
