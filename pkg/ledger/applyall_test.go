package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/finsvc/finance/pkg/ledger"
	"github.com/finsvc/finance/pkg/payment"
	"github.com/finsvc/finance/pkg/pgtest"
	"github.com/finsvc/finance/pkg/postgres"
)

// seedMany writes users 7, 8 and 9 (balance 10000 each) and their accepted
// payments: 100000 (-3000) and 100001 (-1000) of user 7, 100002 (+500) of
// user 8, 100003 (-2000) of user 9. Payment 100004 of user 9 is succeeded
// already, with its entry, as a redelivery would find it.
func seedMany(t *testing.T) *pgxpool.Pool {
	t.Helper()
	pool := pgtest.NewPool(t)
	_, err := pool.Exec(context.Background(), fmt.Sprintf(`
		INSERT INTO merchants (id, name) VALUES (2, 'Apple');
		INSERT INTO wallets (user_id, balance, held, event_seq) VALUES (7, 10000, 4000, 2), (8, 10000, 0, 1), (9, 10700, 2000, 3);
		INSERT INTO payments (id, uid, user_id, merchant_id, amount, status, idempotency_key, request_hash, hold, created_at) VALUES
			(100000, '%s', 7, 2, -3000, 'accepted', 'k-0', 'h', 3000, '2026-01-02T03:04:05Z'),
			(100001, '%s', 7, 2, -1000, 'accepted', 'k-1', 'h', 1000, '2026-01-02T03:04:06Z'),
			(100002, '%s', 8, 2, 500, 'accepted', 'k-2', 'h', 0, '2026-01-02T03:04:07Z'),
			(100003, '%s', 9, 2, -2000, 'accepted', 'k-3', 'h', 2000, '2026-01-02T03:04:08Z'),
			(100004, '%s', 9, 2, 700, 'succeeded', 'k-4', 'h', 0, '2026-01-02T03:04:09Z');
		INSERT INTO entries (user_id, payment_id, merchant_id, amount, occurred_at)
		VALUES (9, 100004, 2, 700, '2026-01-02T03:04:09Z');
		INSERT INTO payment_transitions (payment_id, user_id, user_seq, from_status, to_status, actor) VALUES
			(100000, 7, 1, '', 'accepted', 'gateway'), (100001, 7, 2, '', 'accepted', 'gateway'),
			(100002, 8, 1, '', 'accepted', 'gateway'), (100003, 9, 1, '', 'accepted', 'gateway'),
			(100004, 9, 2, '', 'accepted', 'gateway');
		INSERT INTO payment_transitions (payment_id, user_id, user_seq, from_status, to_status, actor)
		VALUES (100004, 9, 3, 'accepted', 'succeeded', 'test');`,
		uidOfPayment(100000), uidOfPayment(100001), uidOfPayment(100002), uidOfPayment(100003), uidOfPayment(100004)))
	if err != nil {
		t.Fatalf("seed: %v", err)
	}
	return pool
}

func uidOfPayment(id int64) uuid.UUID {
	return uuid.NewSHA1(uuid.NameSpaceOID, fmt.Appendf(nil, "%d", id))
}

// TestApplyAllIsApplyOneByOne applies one batch with every kind of
// transition through ApplyAll on one database and through Apply, one
// transaction each, on another, and requires the same results, events and
// rows: batching changes how many statements run, never what they do.
func TestApplyAllIsApplyOneByOne(t *testing.T) {
	t.Parallel()
	tr := func(id, user int64, to payment.Status, reason string) ledger.Transition {
		return ledger.Transition{PaymentID: id, PaymentUID: uidOfPayment(id), UserID: user, To: to, Actor: "test", Reason: reason}
	}
	batch := []ledger.Transition{
		tr(100000, 7, payment.StatusProcessing, ""),
		tr(100002, 8, payment.StatusSucceeded, ""),
		tr(100000, 7, payment.StatusSucceeded, ""),
		tr(999999, 7, payment.StatusSucceeded, ""),                                                      // no such payment
		tr(100001, 8, payment.StatusFailed, "declined"),                                                 // another user's payment
		{PaymentID: 100003, PaymentUID: uuid.New(), UserID: 9, To: payment.StatusFailed, Actor: "test"}, // stale uid
		tr(100000, 7, payment.StatusSucceeded, ""),                                                      // repeated in the same batch
		tr(100000, 7, payment.StatusProcessing, ""),                                                     // late: out of order
		tr(100004, 9, payment.StatusSucceeded, ""),                                                      // repeated from an earlier batch
		tr(100001, 7, payment.StatusUnknown, "timeout"),
		tr(100003, 9, payment.StatusFailed, "declined"),
		tr(100001, 7, payment.StatusFailed, "declined after all"),
	}

	batched := seedMany(t)
	var got []ledger.Result
	if err := postgres.InTx(context.Background(), batched, func(tx pgx.Tx) error {
		var err error
		got, err = ledger.ApplyAll(context.Background(), tx, batch)
		return err
	}); err != nil {
		t.Fatalf("ApplyAll: %v", err)
	}

	oneByOne := seedMany(t)
	for i, tr := range batch {
		want, err := apply(t, oneByOne, tr)
		if !errors.Is(got[i].Err, errors.Unwrap(err)) || (err == nil) != (got[i].Err == nil) {
			t.Errorf("transition %d (%d → %s): ApplyAll error %v, Apply error %v", i, tr.PaymentID, tr.To, got[i].Err, err)
			continue
		}
		if err != nil {
			continue
		}
		g := got[i]
		g.Event, want.Event = withoutTime(t, g.Event), withoutTime(t, want.Event)
		if diff := cmp.Diff(want, g); diff != "" {
			t.Errorf("transition %d (%d → %s) (-Apply +ApplyAll):\n%s", i, tr.PaymentID, tr.To, diff)
		}
	}
	if diff := cmp.Diff(dump(t, oneByOne), dump(t, batched)); diff != "" {
		t.Errorf("database (-Apply +ApplyAll):\n%s", diff)
	}
}

// dump is every row ApplyAll may write, without ids and times that differ
// between two databases.
func dump(t *testing.T, pool *pgxpool.Pool) []string {
	t.Helper()
	var out []string
	for _, q := range []string{
		`SELECT format('wallet %s %s %s %s', user_id, balance, held, event_seq) FROM wallets ORDER BY user_id`,
		`SELECT format('payment %s %s %s %s', id, status, hold, failure_reason) FROM payments ORDER BY id`,
		`SELECT format('entry %s %s %s %s', payment_id, user_id, amount, occurred_at = (SELECT created_at FROM payments p WHERE p.id = payment_id)) FROM entries ORDER BY payment_id`,
		`SELECT format('transition %s %s %s %s %s %s %s', payment_id, user_id, user_seq, from_status, to_status, actor, reason) FROM payment_transitions ORDER BY user_id, user_seq`,
	} {
		rows, _ := pool.Query(context.Background(), q)
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, lines...)
	}
	return out
}
