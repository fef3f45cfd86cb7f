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
	"github.com/jackc/pgx/v5/pgconn"

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
	// Err, set by ApplyAll only, says why the transition can never apply
	// (ErrPaymentNotFound, ErrStale or ErrUserMismatch); nothing changed.
	Err error
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

const lockPaymentsSQL = `
SELECT id, uid, user_id, merchant_id, amount, status, hold, failure_reason, created_at
FROM payments
WHERE id = ANY($1)
ORDER BY id
FOR UPDATE`

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
// Apply is ApplyAll of one transition.
func Apply(ctx context.Context, tx pgx.Tx, t Transition) (Result, error) {
	rs, err := ApplyAll(ctx, tx, []Transition{t})
	if err != nil {
		return Result{}, err
	}
	if rs[0].Err != nil {
		return Result{}, rs[0].Err
	}
	return rs[0], nil
}

// ApplyAll applies ts in their order inside tx, each with Apply's rules, as
// if Apply were called for each in turn, in a fixed number of statements
// whatever len(ts): it locks every payment named in one statement, works
// out each transition in memory, then writes the entries, the wallets, the
// payments and the audit trail with one statement each. A payment changed
// twice in ts (processing, then succeeded) is written once, in its last
// status, with both transitions in its audit trail; a wallet is updated
// once per call.
//
// It returns one Result per transition, in ts's order. A transition that
// can never apply (ErrPaymentNotFound, ErrStale, ErrUserMismatch) gets the
// error in its Result's Err and changes nothing; the others still apply. A
// returned error means PostgreSQL failed: tx must be rolled back.
//
// Locks are taken in a fixed order, payments by id and then wallets by
// user id, the order in which the gateway locks wallets too, so that
// concurrent callers wait for each other rather than deadlock.
func ApplyAll(ctx context.Context, tx pgx.Tx, ts []Transition) ([]Result, error) {
	payments, err := lockAll(ctx, tx, ts)
	if err != nil {
		return nil, err
	}
	results := make([]Result, len(ts))
	var w writes
	for i, t := range ts {
		results[i], err = w.plan(ctx, tx, t, payments)
		if err != nil {
			return nil, err
		}
	}
	if err := w.write(ctx, tx); err != nil {
		return nil, err
	}
	return results, nil
}

// lockAll locks every payment ts name, in id order, and returns them by id.
func lockAll(ctx context.Context, tx pgx.Tx, ts []Transition) (map[int64]*Payment, error) {
	ids := make([]int64, 0, len(ts))
	for _, t := range ts {
		ids = append(ids, t.PaymentID)
	}
	rows, err := tx.Query(ctx, lockPaymentsSQL, ids)
	if err != nil {
		return nil, fmt.Errorf("lock %d payments: %w", len(ids), err)
	}
	locked, err := pgx.CollectRows(rows, pgx.RowToAddrOfStructByName[lockedPayment])
	if err != nil {
		return nil, fmt.Errorf("lock %d payments: %w", len(ids), err)
	}
	payments := make(map[int64]*Payment, len(locked))
	for _, p := range locked {
		payments[p.ID] = &p.Payment
	}
	return payments, nil
}

type lockedPayment struct {
	ID int64
	Payment
}

// writes is what ApplyAll writes, gathered transition by transition.
type writes struct {
	// payments holds each changed payment as it ends, in the order first changed.
	payments []*Payment
	ids      []int64
	changed  map[int64]bool
	// entries are the settled entries to insert.
	entries []entryRow
	// byUser holds each user's changes in order.
	byUser map[int64][]*change
	users  []int64
	// made holds the event of each change made in this call, by payment
	// and status: a repeat in the same call returns it.
	made map[madeKey]*Event
}

type entryRow struct {
	userID, paymentID, merchantID, amount int64
	occurredAt                            time.Time
}

// change is one applied transition: its event, filled in by write.
type change struct {
	ev               *Event
	from             payment.Status
	actor            string
	credit, release  int64
	creditIfInserted bool // credit only if the entry's insert added a row
}

type madeKey struct {
	paymentID int64
	status    payment.Status
}

// plan works out t against the payments as the earlier transitions left
// them, and gathers its writes.
func (w *writes) plan(ctx context.Context, tx pgx.Tx, t Transition, payments map[int64]*Payment) (Result, error) {
	p, ok := payments[t.PaymentID]
	switch {
	case !ok:
		return Result{Err: fmt.Errorf("payment %d: %w", t.PaymentID, ErrPaymentNotFound)}, nil
	case t.PaymentUID != uuid.Nil && p.UID != t.PaymentUID:
		return Result{Err: fmt.Errorf("payment %d has uid %s, change names uid %s: %w",
			t.PaymentID, p.UID, t.PaymentUID, ErrStale)}, nil
	case t.UserID != 0 && p.UserID != t.UserID:
		return Result{Err: fmt.Errorf("payment %d belongs to user %d, change names user %d: %w",
			t.PaymentID, p.UserID, t.UserID, ErrUserMismatch)}, nil
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
		if ev, ok := w.made[madeKey{t.PaymentID, p.Status}]; ok {
			res.Event = ev
			return res, nil
		}
		res.Event, err = recordedEvent(ctx, tx, t.PaymentID, *p)
		return res, err
	}

	c := &change{from: p.Status, actor: t.Actor}
	reason := p.FailureReason
	switch t.To {
	case payment.StatusSucceeded:
		w.entries = append(w.entries, entryRow{p.UserID, t.PaymentID, p.MerchantID, p.Amount, p.CreatedAt})
		c.credit, c.creditIfInserted = p.Amount, true
		c.release, reason = p.Hold, ""
	case payment.StatusFailed:
		c.release, reason = p.Hold, t.Reason
	case payment.StatusUnknown:
		reason = t.Reason
	}
	c.ev = &Event{
		PaymentID:  t.PaymentID,
		PaymentUID: p.UID,
		UserID:     p.UserID,
		MerchantID: p.MerchantID,
		Amount:     p.Amount,
		Status:     t.To,
		Reason:     t.Reason,
	}
	p.Status, p.Hold, p.FailureReason = t.To, p.Hold-c.release, reason

	if w.changed == nil {
		w.changed, w.byUser, w.made = map[int64]bool{}, map[int64][]*change{}, map[madeKey]*Event{}
	}
	if !w.changed[t.PaymentID] {
		w.changed[t.PaymentID] = true
		w.payments, w.ids = append(w.payments, p), append(w.ids, t.PaymentID)
	}
	if _, ok := w.byUser[p.UserID]; !ok {
		w.users = append(w.users, p.UserID)
	}
	w.byUser[p.UserID] = append(w.byUser[p.UserID], c)
	w.made[madeKey{t.PaymentID, t.To}] = c.ev
	res.Change, res.Event = Applied, c.ev
	return res, nil
}

// write writes what plan gathered: the entries first, since a balance
// moves only for an entry that was inserted; then the wallets, which number
// the changes; then the payments and the audit trail.
func (w *writes) write(ctx context.Context, tx pgx.Tx) error {
	if len(w.payments) == 0 {
		return nil
	}
	inserted, err := w.insertEntries(ctx, tx)
	if err != nil {
		return err
	}
	if err := w.updateWallets(ctx, tx, inserted); err != nil {
		return err
	}
	return w.updatePayments(ctx, tx)
}

const insertEntriesSQL = `
INSERT INTO entries (user_id, payment_id, merchant_id, amount, occurred_at)
SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::timestamptz[])
ON CONFLICT (payment_id) DO NOTHING
RETURNING payment_id`

// insertEntries inserts the settled entries and returns the payments whose
// entry it added (a seeded payment may have one already).
func (w *writes) insertEntries(ctx context.Context, tx pgx.Tx) (map[int64]bool, error) {
	if len(w.entries) == 0 {
		return nil, nil
	}
	n := len(w.entries)
	users, ids, merchants, amounts, times := make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n), make([]time.Time, n)
	for i, e := range w.entries {
		users[i], ids[i], merchants[i], amounts[i], times[i] = e.userID, e.paymentID, e.merchantID, e.amount, e.occurredAt
	}
	rows, err := tx.Query(ctx, insertEntriesSQL, users, ids, merchants, amounts, times)
	if err != nil {
		return nil, fmt.Errorf("insert %d entries: %w", n, err)
	}
	added, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("insert %d entries: %w", n, err)
	}
	inserted := make(map[int64]bool, len(added))
	for _, id := range added {
		inserted[id] = true
	}
	return inserted, nil
}

// lockWalletsSQL locks the wallets in user id order before updateWalletsSQL,
// whose join would lock them in any order.
const lockWalletsSQL = `SELECT user_id FROM wallets WHERE user_id = ANY($1) ORDER BY user_id FOR UPDATE`

// The wallet update also hands out each user's next event sequence numbers.
const updateWalletsSQL = `
UPDATE wallets w
SET balance = w.balance + d.credit, held = w.held - d.release, event_seq = w.event_seq + d.changes, updated_at = now()
FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[]) AS d(user_id, credit, release, changes)
WHERE w.user_id = d.user_id
RETURNING w.user_id, w.balance, w.held, w.event_seq`

// updateWallets moves each user's balance and held amount by the sum of its
// changes and numbers them, then fills in each change's event: its
// sequence number, and the balance and held amount right after it.
func (w *writes) updateWallets(ctx context.Context, tx pgx.Tx, inserted map[int64]bool) error {
	n := len(w.users)
	credits, releases, counts := make([]int64, n), make([]int64, n), make([]int64, n)
	for i, u := range w.users {
		for _, c := range w.byUser[u] {
			if c.creditIfInserted && !inserted[c.ev.PaymentID] {
				c.credit = 0 // the balance moves exactly once per entry
			}
			credits[i] += c.credit
			releases[i] += c.release
		}
		counts[i] = int64(len(w.byUser[u]))
	}
	if n > 1 {
		if _, err := tx.Exec(ctx, lockWalletsSQL, w.users); err != nil {
			return fmt.Errorf("lock %d wallets: %w", n, err)
		}
	}
	rows, err := tx.Query(ctx, updateWalletsSQL, w.users, credits, releases, counts)
	if err != nil {
		return fmt.Errorf("update %d wallets: %w", n, err)
	}
	type wallet struct{ UserID, Balance, Held, EventSeq int64 }
	updated, err := pgx.CollectRows(rows, pgx.RowToStructByPos[wallet])
	if err != nil {
		return fmt.Errorf("update %d wallets: %w", n, err)
	}
	if len(updated) != n {
		return fmt.Errorf("update %d wallets: %d found", n, len(updated))
	}
	for _, wal := range updated {
		// Walk the user's changes backwards from the wallet as it ends.
		bal, held, seq := wal.Balance, wal.Held, wal.EventSeq
		cs := w.byUser[wal.UserID]
		for i := len(cs) - 1; i >= 0; i-- {
			c := cs[i]
			c.ev.Balance, c.ev.Held, c.ev.UserSeq = bal, held, seq
			bal, held, seq = bal-c.credit, held+c.release, seq-1
		}
	}
	return nil
}

const updatePaymentsSQL = `
UPDATE payments p
SET status = d.status, hold = d.hold, failure_reason = d.reason, updated_at = now()
FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[]) AS d(id, status, hold, reason)
WHERE p.id = d.id`

const insertTransitionsSQL = `
INSERT INTO payment_transitions (payment_id, user_id, user_seq, from_status, to_status, actor, reason)
SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[])
RETURNING created_at`

// updatePayments writes each changed payment in its last status and the
// audit trail of every change, in one round trip.
func (w *writes) updatePayments(ctx context.Context, tx pgx.Tx) error {
	n := len(w.payments)
	statuses, holds, reasons := make([]string, n), make([]int64, n), make([]string, n)
	for i, p := range w.payments {
		statuses[i], holds[i], reasons[i] = string(p.Status), p.Hold, p.FailureReason
	}
	var ids, users, seqs []int64
	var froms, tos, actors, why []string
	var evs []*Event
	for _, u := range w.users {
		for _, c := range w.byUser[u] {
			ids, users, seqs = append(ids, c.ev.PaymentID), append(users, u), append(seqs, c.ev.UserSeq)
			froms, tos = append(froms, string(c.from)), append(tos, string(c.ev.Status))
			actors, why = append(actors, c.actor), append(why, c.ev.Reason)
			evs = append(evs, c.ev)
		}
	}
	b := &pgx.Batch{}
	b.Queue(updatePaymentsSQL, w.ids, statuses, holds, reasons).Exec(func(tag pgconn.CommandTag) error {
		if tag.RowsAffected() != int64(n) {
			return fmt.Errorf("update %d payments: %d updated", n, tag.RowsAffected())
		}
		return nil
	})
	var created time.Time
	b.Queue(insertTransitionsSQL, ids, users, seqs, froms, tos, actors, why).Query(func(rows pgx.Rows) error {
		// Every row gets the transaction's now().
		times, err := pgx.CollectRows(rows, pgx.RowTo[time.Time])
		if err == nil && len(times) > 0 {
			created = times[0]
		}
		return err
	})
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("write %d payments and %d transitions: %w", n, len(evs), err)
	}
	for _, ev := range evs {
		ev.OccurredAt = created
	}
	return nil
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
