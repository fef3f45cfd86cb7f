// Package ledger applies a payment's status change to PostgreSQL: the
// payment's status, the wallet's balance and hold, the settled entry and the
// audit trail, inside the caller's transaction, forward only.
//
// It is the one place that knows what a transition does to money. The status
// consumer applies the dispatcher's outcomes with these rules, and the
// reconciler resolves unknown payments with the same rules, so a payment
// settled by either path looks exactly the same.
package ledger

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/finsvc/finance/pkg/payment"
)

// Sentinel errors. All are permanent: applying the same change again cannot
// succeed.
var (
	ErrPaymentNotFound = errors.New("payment not found")
	ErrUserMismatch    = errors.New("change names another user than the payment's")
	// ErrStale: the change names a payment uid that the payment with its
	// id does not have. It comes from a record made for another database
	// (one restored from a backup since, or replaced): payment ids repeat
	// across databases, uids never do.
	ErrStale = errors.New("change names another payment uid than the payment's: a record of another database")
)

// Transition is a status change to apply.
type Transition struct {
	PaymentID int64
	// PaymentUID, when not the nil uid, must be the payment's uid
	// (ErrStale otherwise).
	PaymentUID uuid.UUID
	// UserID, when not 0, must own the payment (ErrUserMismatch otherwise).
	UserID int64
	To     payment.Status // processing, succeeded, failed or unknown
	// Actor is who or what made the change, kept in payment_transitions.
	Actor string
	// Reason says why; it becomes the payment's failure_reason when To is
	// failed or unknown.
	Reason string
}

// Change tells what Apply did.
type Change int

// The results of Apply.
const (
	// Applied: the payment moved to the new status.
	Applied Change = iota + 1
	// Duplicate: the payment already has that status (a redelivery).
	Duplicate
	// OutOfOrder: the change would move the payment backwards or change a
	// final status. Nothing changed.
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
	PaymentUID uuid.UUID
	UserID     int64
	MerchantID int64
	Amount     int64
	Status     payment.Status
	Reason     string
	Balance    int64 // the wallet's balance after the change (now, for a rebuilt event)
	Held       int64 // the wallet's held amount after the change (now, for a rebuilt event)
	UserSeq    int64
	OccurredAt time.Time
}

// ID is the event's deterministic id, "<payment_id>:<status>", so that an
// event emitted again for a repeated change (a redelivered outcome) is
// recognisable downstream.
func (e Event) ID() string {
	return fmt.Sprintf("%d:%s", e.PaymentID, e.Status)
}

// Result is what Apply did and the event to emit for it.
type Result struct {
	Change Change
	// From is the payment's status before the change.
	From payment.Status
	// Event is the change's event when Applied; the recorded change rebuilt
	// from the audit trail when Duplicate, with the same user_seq, so that a
	// change committed by a caller that died before emitting its event can
	// be emitted again (nil if none was recorded, e.g. a seeded payment);
	// nil when OutOfOrder.
	Event *Event
}

// Payment is a payment row as locked by Apply.
type Payment struct {
	UID           uuid.UUID
	UserID        int64
	MerchantID    int64
	Amount        int64
	Status        payment.Status
	Hold          int64
	FailureReason string
	CreatedAt     time.Time
}

const lockPaymentSQL = `
SELECT uid, user_id, merchant_id, amount, status, hold, failure_reason, created_at
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

// Lock reads payment id FOR UPDATE inside tx. It returns ErrPaymentNotFound
// when there is no such payment.
func Lock(ctx context.Context, tx pgx.Tx, id int64) (Payment, error) {
	rows, err := tx.Query(ctx, lockPaymentSQL, id)
	if err != nil {
		return Payment{}, fmt.Errorf("lock payment %d: %w", id, err)
	}
	p, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[Payment])
	if errors.Is(err, pgx.ErrNoRows) {
		return Payment{}, fmt.Errorf("payment %d: %w", id, ErrPaymentNotFound)
	}
	if err != nil {
		return Payment{}, fmt.Errorf("lock payment %d: %w", id, err)
	}
	return p, nil
}

// Apply moves payment t.PaymentID to t.To inside tx, if payment.Transition
// allows it:
//
//   - processing: the status only.
//   - succeeded: a settled entry (occurred_at = the payment's creation), the
//     amount added to the balance, the hold released.
//   - failed: the hold released, the failure reason kept.
//   - unknown: the status and reason; the hold stays until resolved.
//
// Every change adds a payment_transitions row with t.Actor and t.Reason,
// numbered with the user's next wallets.event_seq, which the wallet update
// bumps. A repeated change alters nothing and returns the recorded change
// again; a change that would move the payment backwards alters nothing and
// returns no event.
//
// The caller owns tx: everything Apply writes commits or rolls back with it.
func Apply(ctx context.Context, tx pgx.Tx, t Transition) (Result, error) {
	p, err := Lock(ctx, tx, t.PaymentID)
	if err != nil {
		return Result{}, err
	}
	if t.PaymentUID != uuid.Nil && p.UID != t.PaymentUID {
		return Result{}, fmt.Errorf("payment %d has uid %s, change names uid %s: %w",
			t.PaymentID, p.UID, t.PaymentUID, ErrStale)
	}
	if t.UserID != 0 && p.UserID != t.UserID {
		return Result{}, fmt.Errorf("payment %d belongs to user %d, change names user %d: %w",
			t.PaymentID, p.UserID, t.UserID, ErrUserMismatch)
	}
	res := Result{From: p.Status}
	changed, err := payment.Transition(p.Status, t.To)
	switch {
	case errors.Is(err, payment.ErrInvalidTransition):
		res.Change = OutOfOrder
		return res, nil
	case err != nil:
		return Result{}, err
	case !changed:
		res.Change = Duplicate
		res.Event, err = recordedEvent(ctx, tx, t.PaymentID, p)
		return res, err
	}
	res.Change = Applied
	res.Event, err = apply(ctx, tx, t, p)
	if err != nil {
		return Result{}, err
	}
	return res, nil
}

// apply writes the change from p.Status to t.To.
func apply(ctx context.Context, tx pgx.Tx, t Transition, p Payment) (*Event, error) {
	var (
		credit  int64 // added to the balance
		release int64 // taken off the wallet's held amount
		reason  = p.FailureReason
	)
	switch t.To {
	case payment.StatusSucceeded:
		tag, err := tx.Exec(ctx, insertEntrySQL, p.UserID, t.PaymentID, p.MerchantID, p.Amount, p.CreatedAt)
		if err != nil {
			return nil, fmt.Errorf("insert entry for payment %d: %w", t.PaymentID, err)
		}
		if tag.RowsAffected() == 1 { // the balance moves exactly once per entry
			credit = p.Amount
		}
		release, reason = p.Hold, ""
	case payment.StatusFailed:
		release, reason = p.Hold, t.Reason
	case payment.StatusUnknown:
		reason = t.Reason
	}

	ev := &Event{
		PaymentID:  t.PaymentID,
		PaymentUID: p.UID,
		UserID:     p.UserID,
		MerchantID: p.MerchantID,
		Amount:     p.Amount,
		Status:     t.To,
		Reason:     t.Reason,
	}
	if err := tx.QueryRow(ctx, updateWalletSQL, p.UserID, credit, release).
		Scan(&ev.Balance, &ev.Held, &ev.UserSeq); err != nil {
		return nil, fmt.Errorf("update wallet of user %d: %w", p.UserID, err)
	}
	if _, err := tx.Exec(ctx, updatePaymentSQL, t.PaymentID, t.To, p.Hold-release, reason); err != nil {
		return nil, fmt.Errorf("update payment %d: %w", t.PaymentID, err)
	}
	if err := tx.QueryRow(ctx, insertTransitionSQL, t.PaymentID, p.UserID, ev.UserSeq, p.Status, t.To, t.Actor, t.Reason).
		Scan(&ev.OccurredAt); err != nil {
		return nil, fmt.Errorf("insert transition of payment %d to %s: %w", t.PaymentID, t.To, err)
	}
	return ev, nil
}

// recordedEvent rebuilds the event of the transition of payment id to its
// current status from the audit trail and the wallet as it is now. It returns
// nil when no such transition was recorded.
func recordedEvent(ctx context.Context, tx pgx.Tx, id int64, p Payment) (*Event, error) {
	ev := &Event{
		PaymentID:  id,
		PaymentUID: p.UID,
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
