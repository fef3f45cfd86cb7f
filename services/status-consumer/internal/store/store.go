// Package store applies payment outcomes to PostgreSQL: the payment's status,
// the wallet's balance and hold, the settled entry and the audit trail, in one
// transaction per outcome, forward only.
package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/finsvc/finance/pkg/payment"
	"github.com/finsvc/finance/pkg/postgres"
)

// Actor is the payment_transitions.actor of every change this store makes.
const Actor = "status-consumer"

// Sentinel errors. Both are permanent: retrying the same outcome cannot succeed.
var (
	ErrPaymentNotFound = errors.New("payment not found")
	ErrUserMismatch    = errors.New("outcome user does not own the payment")
)

// Outcome is what the dispatcher learned about a payment.
type Outcome struct {
	PaymentID int64
	UserID    int64
	Status    payment.Status // processing, succeeded, failed or unknown
	Reason    string
}

// Change tells what ApplyOutcome did.
type Change int

// The results of ApplyOutcome.
const (
	// Applied: the payment moved to the outcome's status.
	Applied Change = iota + 1
	// Duplicate: the payment already has the outcome's status (a redelivery).
	Duplicate
	// OutOfOrder: the outcome would move the payment backwards or change a
	// final status, e.g. a late "processing" after "succeeded". Nothing changed.
	OutOfOrder
)

// String returns the change's name, as used in logs and metric labels.
func (c Change) String() string {
	switch c {
	case Applied:
		return "applied"
	case Duplicate:
		return "duplicate"
	case OutOfOrder:
		return "out_of_order"
	default:
		return fmt.Sprintf("change(%d)", int(c))
	}
}

// Event is a payment's change as announced on payments.events.
type Event struct {
	PaymentID  int64
	UserID     int64
	MerchantID int64
	Amount     int64
	Status     payment.Status
	Reason     string
	Balance    int64 // the wallet's balance after the change (now, for a re-emitted event)
	Held       int64 // the wallet's held amount after the change (now, for a re-emitted event)
	UserSeq    int64
	OccurredAt time.Time
}

// ID is the event's deterministic id, "<payment_id>:<status>", so that an
// event emitted again for a redelivered outcome is recognisable downstream.
func (e Event) ID() string {
	return fmt.Sprintf("%d:%s", e.PaymentID, e.Status)
}

// Result is what ApplyOutcome did and the event to emit for it.
type Result struct {
	Change Change
	// From is the payment's status before the outcome.
	From payment.Status
	// Event is the event to emit: the new change when Applied; the change
	// rebuilt from the audit trail when Duplicate (the first delivery may have
	// committed without emitting); nil when OutOfOrder, or when a Duplicate
	// has no recorded transition to rebuild from.
	Event *Event
}

// Store applies outcomes. It is safe for concurrent use.
type Store struct {
	db *pgxpool.Pool
}

// New returns a Store over db.
func New(db *pgxpool.Pool) *Store {
	return &Store{db: db}
}

// lockedPayment is a payment row read FOR UPDATE.
type lockedPayment struct {
	UserID        int64
	MerchantID    int64
	Amount        int64
	Status        payment.Status
	Hold          int64
	FailureReason string
	CreatedAt     time.Time
}

const lockPaymentSQL = `
SELECT user_id, merchant_id, amount, status, hold, failure_reason, created_at
FROM payments
WHERE id = $1
FOR UPDATE`

const insertEntrySQL = `
INSERT INTO entries (user_id, payment_id, merchant_id, amount, occurred_at)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (payment_id) DO NOTHING`

// The wallet update also hands out the user's next event sequence number.
const updateWalletSQL = `
UPDATE wallets
SET balance = balance + $2, held = held - $3, event_seq = event_seq + 1, updated_at = now()
WHERE user_id = $1
RETURNING balance, held, event_seq`

const updatePaymentSQL = `
UPDATE payments
SET status = $2, hold = $3, failure_reason = $4, updated_at = now()
WHERE id = $1`

const insertTransitionSQL = `
INSERT INTO payment_transitions (payment_id, user_id, user_seq, from_status, to_status, actor, reason)
VALUES ($1, $2, $3, $4, $5, $6, $7)
RETURNING created_at`

const recordedTransitionSQL = `
SELECT t.user_seq, t.reason, t.created_at, w.balance, w.held
FROM payment_transitions t
JOIN wallets w ON w.user_id = t.user_id
WHERE t.payment_id = $1 AND t.to_status = $2`

// ApplyOutcome moves payment o.PaymentID to o.Status in one transaction, if
// payment.Transition allows it:
//
//   - processing: the status only.
//   - succeeded: a settled entry (occurred_at = the payment's creation), the
//     amount added to the balance, the hold released.
//   - failed: the hold released, the failure reason kept.
//   - unknown: the status and reason; the hold stays until resolved.
//
// Every change adds a payment_transitions row numbered with the user's next
// event_seq, which the wallet update bumps. A redelivered outcome changes
// nothing and returns the recorded change again; an outcome that would move
// the payment backwards changes nothing and returns no event.
//
// It returns ErrPaymentNotFound or ErrUserMismatch for outcomes that can
// never apply.
func (s *Store) ApplyOutcome(ctx context.Context, o Outcome) (Result, error) {
	var res Result
	err := postgres.InTx(ctx, s.db, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, lockPaymentSQL, o.PaymentID)
		if err != nil {
			return fmt.Errorf("lock payment %d: %w", o.PaymentID, err)
		}
		p, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[lockedPayment])
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("payment %d: %w", o.PaymentID, ErrPaymentNotFound)
		}
		if err != nil {
			return fmt.Errorf("lock payment %d: %w", o.PaymentID, err)
		}
		if p.UserID != o.UserID {
			return fmt.Errorf("payment %d belongs to user %d, outcome names user %d: %w",
				o.PaymentID, p.UserID, o.UserID, ErrUserMismatch)
		}
		res.From = p.Status

		changed, err := payment.Transition(p.Status, o.Status)
		switch {
		case errors.Is(err, payment.ErrInvalidTransition):
			res.Change = OutOfOrder
			return nil
		case err != nil:
			return err
		case !changed:
			res.Change = Duplicate
			res.Event, err = recordedEvent(ctx, tx, o.PaymentID, p)
			return err
		}
		res.Change = Applied
		res.Event, err = applyTransition(ctx, tx, o, p)
		return err
	})
	if err != nil {
		return Result{}, err
	}
	return res, nil
}

// applyTransition writes the change from p.Status to o.Status.
func applyTransition(ctx context.Context, tx pgx.Tx, o Outcome, p lockedPayment) (*Event, error) {
	var (
		credit  int64 // added to the balance
		release int64 // taken off the wallet's held amount
		reason  = p.FailureReason
	)
	switch o.Status {
	case payment.StatusSucceeded:
		tag, err := tx.Exec(ctx, insertEntrySQL, p.UserID, o.PaymentID, p.MerchantID, p.Amount, p.CreatedAt)
		if err != nil {
			return nil, fmt.Errorf("insert entry for payment %d: %w", o.PaymentID, err)
		}
		if tag.RowsAffected() == 1 { // the balance moves exactly once per entry
			credit = p.Amount
		}
		release, reason = p.Hold, ""
	case payment.StatusFailed:
		release, reason = p.Hold, o.Reason
	case payment.StatusUnknown:
		reason = o.Reason
	}

	ev := &Event{
		PaymentID:  o.PaymentID,
		UserID:     p.UserID,
		MerchantID: p.MerchantID,
		Amount:     p.Amount,
		Status:     o.Status,
		Reason:     o.Reason,
	}
	if err := tx.QueryRow(ctx, updateWalletSQL, p.UserID, credit, release).
		Scan(&ev.Balance, &ev.Held, &ev.UserSeq); err != nil {
		return nil, fmt.Errorf("update wallet of user %d: %w", p.UserID, err)
	}
	if _, err := tx.Exec(ctx, updatePaymentSQL, o.PaymentID, o.Status, p.Hold-release, reason); err != nil {
		return nil, fmt.Errorf("update payment %d: %w", o.PaymentID, err)
	}
	if err := tx.QueryRow(ctx, insertTransitionSQL, o.PaymentID, p.UserID, ev.UserSeq, p.Status, o.Status, Actor, o.Reason).
		Scan(&ev.OccurredAt); err != nil {
		return nil, fmt.Errorf("insert transition of payment %d to %s: %w", o.PaymentID, o.Status, err)
	}
	return ev, nil
}

// recordedEvent rebuilds the event of the transition of payment id to its
// current status from the audit trail and the wallet as it is now. It returns
// nil when no such transition was recorded (e.g. seeded payments).
func recordedEvent(ctx context.Context, tx pgx.Tx, id int64, p lockedPayment) (*Event, error) {
	ev := &Event{
		PaymentID:  id,
		UserID:     p.UserID,
		MerchantID: p.MerchantID,
		Amount:     p.Amount,
		Status:     p.Status,
	}
	err := tx.QueryRow(ctx, recordedTransitionSQL, id, p.Status).
		Scan(&ev.UserSeq, &ev.Reason, &ev.OccurredAt, &ev.Balance, &ev.Held)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read transition of payment %d to %s: %w", id, p.Status, err)
	}
	return ev, nil
}
