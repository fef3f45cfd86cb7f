package claim

import (
	"context"
	"errors"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/finsvc/finance/pkg/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func seedPayment(t *testing.T, pool *pgxpool.Pool, id int64) {
	t.Helper()
	for _, q := range []string{
		`INSERT INTO merchants (id, name) VALUES (1, 'test') ON CONFLICT DO NOTHING`,
		`INSERT INTO wallets (user_id) VALUES (1) ON CONFLICT DO NOTHING`,
	} {
		if _, err := pool.Exec(t.Context(), q); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := pool.Exec(t.Context(), `INSERT INTO payments (id, user_id, merchant_id, amount, status, idempotency_key, request_hash)
		VALUES ($1, 1, 1, -100, 'accepted', $2, '')`, id, "k-"+strconv.FormatInt(id, 10)); err != nil {
		t.Fatal(err)
	}
}

func TestClaimOnce(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t)
	seedPayment(t, pool, 100001)
	a, b := New(pool, "replica-a", nil), New(pool, "replica-b", nil)
	if ok, err := a.Claim(t.Context(), 100001); err != nil || !ok {
		t.Fatalf("first claim = %v, %v; want true", ok, err)
	}
	for _, s := range []*Store{a, b} {
		if ok, err := s.Claim(t.Context(), 100001); err != nil || ok {
			t.Fatalf("second claim by %s = %v, %v; want false (already claimed)", s.by, ok, err)
		}
	}
	var by string
	if err := pool.QueryRow(t.Context(), `SELECT claimed_by FROM dispatch_claims WHERE payment_id = 100001`).Scan(&by); err != nil || by != "replica-a" {
		t.Fatalf("claimed_by = %q, %v; want replica-a", by, err)
	}
	// Another replica cannot release it; its claimant can.
	if err := b.Release(t.Context(), 100001); err != nil {
		t.Fatal(err)
	}
	if ok, _ := b.Claim(t.Context(), 100001); ok {
		t.Fatal("claim released by another replica")
	}
	if err := a.Release(t.Context(), 100001); err != nil {
		t.Fatal(err)
	}
	if ok, err := b.Claim(t.Context(), 100001); err != nil || !ok {
		t.Fatalf("claim after release = %v, %v; want true", ok, err)
	}
}

func TestClaimUnknownPayment(t *testing.T) {
	t.Parallel()
	s := New(pgtest.NewPool(t), "replica-a", nil)
	start := time.Now()
	ok, err := s.Claim(t.Context(), 424242)
	if ok || !errors.Is(err, ErrNoPayment) {
		t.Fatalf("claim of a payment without a row = %v, %v; want ErrNoPayment", ok, err)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("ErrNoPayment was retried for %v", time.Since(start))
	}
}

// A database that cannot be reached is retried for RetryFor, then reported:
// the caller does not send the payment.
func TestClaimFailureIsBoundedAndContextBound(t *testing.T) {
	t.Parallel()
	cfg, err := pgxpool.ParseConfig("postgres://nobody@127.0.0.1:1/none?connect_timeout=1")
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	s := New(pool, "replica-a", nil)
	s.RetryFor = 300 * time.Millisecond
	s.BackoffInitial = 10 * time.Millisecond
	start := time.Now()
	ok, err := s.Claim(t.Context(), 1)
	if ok || err == nil || errors.Is(err, ErrNoPayment) {
		t.Fatalf("claim with the database down = %v, %v; want an error", ok, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("claim failed after %v, want about RetryFor", d)
	}

	s.RetryFor = time.Hour
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	start = time.Now()
	if ok, err := s.Claim(ctx, 1); ok || err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("claim with the database down and ctx ending = %v, %v; want the context's error", ok, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("claim returned %v after its context ended, want at once", d)
	}
}
