package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Transition is one change of a payment as the events of its user show it:
// the payment as it was right after the change, numbered with the user's
// user_seq.
type Transition struct {
	Payment Payment
	UserSeq int64
}

// EventSeq returns the user_seq of userID's latest change (0 before any),
// or ErrWalletNotFound.
func (s *Store) EventSeq(ctx context.Context, userID int64) (int64, error) {
	var seq int64
	err := s.pool.QueryRow(ctx, `SELECT event_seq FROM wallets WHERE user_id = $1`, userID).Scan(&seq)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("user %d: %w", userID, ErrWalletNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("read event_seq of user %d: %w", userID, err)
	}
	return seq, nil
}

// Transitions returns userID's changes with after < user_seq <= upto, in
// user_seq order, at most limit of them: one range scan of the
// payment_transitions_user_seq unique index, joined to payments by key.
func (s *Store) Transitions(ctx context.Context, userID, after, upto int64, limit int) ([]Transition, error) {
	rows, _ := s.pool.Query(ctx, `
		SELECT t.user_seq, t.to_status, t.reason, t.created_at,
		       p.id, p.uid, p.user_id, p.merchant_id, p.amount, p.idempotency_key, p.created_at
		FROM payment_transitions t
		JOIN payments p ON p.id = t.payment_id
		WHERE t.user_id = $1 AND t.user_seq > $2 AND t.user_seq <= $3
		ORDER BY t.user_seq
		LIMIT $4`, userID, after, upto, limit)
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Transition, error) {
		var t Transition
		p := &t.Payment
		err := row.Scan(&t.UserSeq, &p.Status, &p.FailureReason, &p.UpdatedAt,
			&p.ID, &p.UID, &p.UserID, &p.MerchantID, &p.Amount, &p.IdempotencyKey, &p.CreatedAt)
		return t, err
	})
	if err != nil {
		return nil, fmt.Errorf("read transitions of user %d after %d: %w", userID, after, err)
	}
	return out, nil
}

// PaymentFacts are the parts of a payment that never change after
// acceptance and that payments.events does not carry.
type PaymentFacts struct {
	IdempotencyKey string
	CreatedAt      time.Time
}

// PaymentFacts returns the unchanging facts of the payments ids, by id;
// ids that name no payment are absent.
func (s *Store) PaymentFacts(ctx context.Context, ids []int64) (map[int64]PaymentFacts, error) {
	rows, _ := s.pool.Query(ctx, `SELECT id, idempotency_key, created_at FROM payments WHERE id = ANY($1)`, ids)
	out := make(map[int64]PaymentFacts, len(ids))
	var (
		id int64
		f  PaymentFacts
	)
	_, err := pgx.ForEachRow(rows, []any{&id, &f.IdempotencyKey, &f.CreatedAt}, func() error {
		out[id] = f
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read payments %v: %w", ids, err)
	}
	return out, nil
}
