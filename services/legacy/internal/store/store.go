// Package store is the as-is Finance Service's database: exactly the two
// tables of the system as it stands today, providers (id, name) and payments
// (id, amount, user_id, merchant_id, timestamp). There is no balance column:
// a balance is the sum of a user's payments.
package store

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/finsvc/finance/pkg/postgres"
)

//go:embed schema.sql
var schemaSQL string

// Store reads and writes the two tables.
type Store struct {
	pool *pgxpool.Pool
}

// New returns a Store over pool.
func New(pool *pgxpool.Pool) *Store {
	return &Store{pool: pool}
}

// Migrate creates the two tables (and the index the feed reads through) when
// they do not exist. The legacy system has no migration tool; CREATE TABLE IF
// NOT EXISTS is what it would do.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	if _, err := pool.Exec(ctx, schemaSQL); err != nil {
		return fmt.Errorf("create legacy tables: %w", err)
	}
	return nil
}

// CreateDatabase creates the database named in databaseURL when it does not
// exist, connecting to the server's "postgres" database to do so. It reports
// whether it created it.
func CreateDatabase(ctx context.Context, databaseURL string) (bool, error) {
	u, err := url.Parse(databaseURL)
	if err != nil {
		return false, fmt.Errorf("parse database url: %w", err)
	}
	name := u.Path
	if len(name) > 0 && name[0] == '/' {
		name = name[1:]
	}
	if name == "" {
		return false, errors.New("database url names no database")
	}
	conn, err := pgx.Connect(ctx, databaseURL)
	if err == nil {
		return false, conn.Close(ctx)
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "3D000" { // invalid_catalog_name
		return false, fmt.Errorf("connect: %w", err)
	}
	admin := *u
	admin.Path = "/postgres"
	conn, err = pgx.Connect(ctx, admin.String())
	if err != nil {
		return false, fmt.Errorf("connect to the postgres database to create %q: %w", name, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		if postgres.IsUniqueViolation(err) || isDuplicateDatabase(err) {
			return false, nil
		}
		return false, fmt.Errorf("create database %q: %w", name, err)
	}
	return true, nil
}

func isDuplicateDatabase(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "42P04"
}

// Payment is a row of the payments table.
type Payment struct {
	ID         int64     `json:"id"`
	Amount     int64     `json:"amount"`
	UserID     int64     `json:"user_id"`
	MerchantID int64     `json:"merchant_id"`
	Timestamp  time.Time `json:"-"`
}

// InsertPayment stores a payment the processor has executed and returns it
// with its id and timestamp.
func (s *Store) InsertPayment(ctx context.Context, userID, merchantID, amount int64) (Payment, error) {
	p := Payment{UserID: userID, MerchantID: merchantID, Amount: amount}
	err := s.pool.QueryRow(ctx,
		`INSERT INTO payments (amount, user_id, merchant_id) VALUES ($1, $2, $3) RETURNING id, "timestamp"`,
		amount, userID, merchantID).Scan(&p.ID, &p.Timestamp)
	if err != nil {
		return Payment{}, fmt.Errorf("insert payment of user %d: %w", userID, err)
	}
	return p, nil
}

// FeedItem is one transaction of a feed: a payment and its provider's name
// ("" when the provider is not in the providers table).
type FeedItem struct {
	ID        int64
	Name      string
	Amount    int64
	Timestamp time.Time
}

// Feed is a user's balance (the sum of the user's payments) and payments,
// newest first.
type Feed struct {
	UserID       int64
	Balance      int64
	Transactions []FeedItem
}

// Feed reads a user's feed. A user without payments has an empty feed and a
// zero balance, as the as-is service answers.
func (s *Store) Feed(ctx context.Context, userID int64) (Feed, error) {
	f := Feed{UserID: userID, Transactions: []FeedItem{}}
	// One statement: the balance and the list come from the same snapshot.
	rows, err := s.pool.Query(ctx, `
		SELECT p.id, COALESCE(pr.name, ''), p.amount, p."timestamp", SUM(p.amount) OVER ()
		FROM payments p
		LEFT JOIN LATERAL (SELECT name FROM providers WHERE providers.id = p.merchant_id ORDER BY name LIMIT 1) pr ON true
		WHERE p.user_id = $1
		ORDER BY p.id DESC`, userID)
	if err != nil {
		return Feed{}, fmt.Errorf("read feed of user %d: %w", userID, err)
	}
	defer rows.Close()
	for rows.Next() {
		var it FeedItem
		if err := rows.Scan(&it.ID, &it.Name, &it.Amount, &it.Timestamp, &f.Balance); err != nil {
			return Feed{}, fmt.Errorf("read feed of user %d: %w", userID, err)
		}
		f.Transactions = append(f.Transactions, it)
	}
	if err := rows.Err(); err != nil {
		return Feed{}, fmt.Errorf("read feed of user %d: %w", userID, err)
	}
	return f, nil
}

// Ping checks the database.
func (s *Store) Ping(ctx context.Context) error {
	return s.pool.Ping(ctx)
}
