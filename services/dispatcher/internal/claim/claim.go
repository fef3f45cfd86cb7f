// Package claim records, durably in PostgreSQL, that a payment is about to be
// sent to the processor's as-is API, which has no idempotency key: a payment
// is sent only by the dispatcher that inserted its claim, so it is sent at
// most once, ever, whatever crashes and rebalances redeliver it.
package claim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/finsvc/finance/pkg/postgres"
)

// ErrNoPayment reports that the payment has no row in payments: it cannot be
// claimed, hence never sent.
var ErrNoPayment = errors.New("payment not found in the database")

// Store claims payments in the dispatch_claims table.
type Store struct {
	pool *pgxpool.Pool
	by   string
	// RetryFor bounds the time spent retrying a failing claim; zero means 30s.
	RetryFor time.Duration
	// BackoffInitial and BackoffMax shape the backoff between tries; zero
	// means 50ms and 2s.
	BackoffInitial, BackoffMax time.Duration
	log                        *slog.Logger
}

// New returns a Store claiming in pool's database on behalf of by (the
// replica's transactional id).
func New(pool *pgxpool.Pool, by string, logger *slog.Logger) *Store {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Store{pool: pool, by: by, log: logger}
}

// Claim inserts paymentID's claim. It reports true when this call inserted
// it (the payment may be sent, once) and false when it was already there
// (the payment may already have been sent: it must not be sent again).
// Failures are retried with backoff until RetryFor has passed or ctx ends;
// the error then means nothing is known, so the payment must not be sent.
// ErrNoPayment is not retried.
func (s *Store) Claim(ctx context.Context, paymentID int64) (bool, error) {
	retryFor := s.RetryFor
	if retryFor <= 0 {
		retryFor = 30 * time.Second
	}
	initial, maxWait := s.BackoffInitial, s.BackoffMax
	if initial <= 0 {
		initial = 50 * time.Millisecond
	}
	if maxWait <= 0 {
		maxWait = 2 * time.Second
	}
	bo := backoff.WithContext(backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(initial),
		backoff.WithMaxInterval(maxWait),
		backoff.WithMultiplier(2),
		backoff.WithRandomizationFactor(0.5),
		backoff.WithMaxElapsedTime(retryFor),
	), ctx)
	tries := 0
	var inserted bool
	err := backoff.Retry(func() error {
		tries++
		var err error
		inserted, err = s.insert(ctx, paymentID)
		if err == nil {
			return nil
		}
		if errors.Is(err, ErrNoPayment) {
			return backoff.Permanent(err)
		}
		s.log.WarnContext(ctx, "dispatch claim failed; retrying, the payment is not sent meanwhile",
			"payment_id", paymentID, "try", tries, "err", err)
		return err
	}, bo)
	if err != nil {
		if ctx.Err() != nil && !errors.Is(err, ErrNoPayment) {
			err = errors.Join(err, ctx.Err())
		}
		return false, fmt.Errorf("claim payment %d after %d tries: %w", paymentID, tries, err)
	}
	return inserted, nil
}

func (s *Store) insert(ctx context.Context, paymentID int64) (bool, error) {
	// Each try is bounded so that a hung connection cannot stall the payment.
	tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	tag, err := s.pool.Exec(tctx,
		`INSERT INTO dispatch_claims (payment_id, claimed_by) VALUES ($1, $2) ON CONFLICT (payment_id) DO NOTHING`,
		paymentID, s.by)
	if err != nil {
		if postgres.IsForeignKeyViolation(err) {
			return false, fmt.Errorf("%w: %w", ErrNoPayment, err)
		}
		return false, err
	}
	return tag.RowsAffected() == 1, nil
}

// Release deletes paymentID's claim, for a payment that was claimed but
// certainly never sent (the processor client returned ErrNotSent), so that
// its redelivery may send it. It is best effort: a claim left behind makes
// the redelivery unknown, never sends twice.
func (s *Store) Release(ctx context.Context, paymentID int64) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_, err := s.pool.Exec(ctx, `DELETE FROM dispatch_claims WHERE payment_id = $1 AND claimed_by = $2`, paymentID, s.by)
	return err
}
