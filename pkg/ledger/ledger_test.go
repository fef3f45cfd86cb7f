package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/finsvc/finance/pkg/ledger"
	"github.com/finsvc/finance/pkg/payment"
	"github.com/finsvc/finance/pkg/pgtest"
	"github.com/finsvc/finance/pkg/postgres"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

const (
	userID    = 7
	paymentID = 100000
	merchant  = 2
	balance   = 10000
	actor     = "test"
)

// paymentUID is payment 100000's uid.
var paymentUID = uuid.MustParse("0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")

// seed writes a merchant, user 7's wallet with balance 10000, and payment
// 100000 of amount, accepted by the gateway: its hold reserved and its first
// transition (user_seq 1) recorded.
func seed(t *testing.T, amount int64) *pgxpool.Pool {
	t.Helper()
	pool := pgtest.NewPool(t)
	hold := payment.HoldFor(amount)
	_, err := pool.Exec(context.Background(), fmt.Sprintf(`
		INSERT INTO merchants (id, name) VALUES (1, 'Pleo'), (2, 'Apple');
		INSERT INTO wallets (user_id, balance, held, event_seq) VALUES (7, 10000, %[2]d, 1);
		INSERT INTO payments (id, uid, user_id, merchant_id, amount, status, idempotency_key, request_hash, hold, created_at)
		VALUES (100000, '%[3]s', 7, 2, %[1]d, 'accepted', 'k-1', 'h', %[2]d, '2026-01-02T03:04:05Z');
		INSERT INTO payment_transitions (payment_id, user_id, user_seq, from_status, to_status, actor)
		VALUES (100000, 7, 1, '', 'accepted', 'gateway');`, amount, hold, paymentUID))
	if err != nil {
		t.Fatalf("seed: %v", err)
	}
	return pool
}

// apply runs ledger.Apply in a transaction of its own.
func apply(t *testing.T, pool *pgxpool.Pool, tr ledger.Transition) (ledger.Result, error) {
	t.Helper()
	var res ledger.Result
	err := postgres.InTx(context.Background(), pool, func(tx pgx.Tx) error {
		var err error
		res, err = ledger.Apply(context.Background(), tx, tr)
		return err
	})
	return res, err
}

type step struct {
	to         payment.Status
	reason     string
	wantChange ledger.Change
	wantFrom   payment.Status
	wantEvent  *ledger.Event // OccurredAt is not compared
}

// state is what a test checks after its steps.
type state struct {
	Balance, Held, EventSeq int64
	Status                  payment.Status
	Hold                    int64
	FailureReason           string
	Entries                 []entry
	Transitions             []transition
}

type entry struct {
	Amount          int64
	AtPaymentCreate bool // occurred_at is the payment's created_at
}

type transition struct {
	UserSeq  int64
	From, To string
	Actor    string
	Reason   string
}

func ev(status payment.Status, reason string, bal, held, seq int64) *ledger.Event {
	return &ledger.Event{PaymentID: paymentID, PaymentUID: paymentUID, UserID: userID, MerchantID: merchant, Amount: -3000,
		Status: status, Reason: reason, Balance: bal, Held: held, UserSeq: seq}
}

var accepted = transition{1, "", "accepted", "gateway", ""}

func TestApply(t *testing.T) {
	t.Parallel()
	const (
		acc  = payment.StatusAccepted
		proc = payment.StatusProcessing
		succ = payment.StatusSucceeded
		fail = payment.StatusFailed
		unk  = payment.StatusUnknown
	)
	tests := []struct {
		name   string
		amount int64
		steps  []step
		want   state
	}{
		{
			name:   "succeeded settles the debit and releases the hold",
			amount: -3000,
			steps:  []step{{succ, "", ledger.Applied, acc, ev(succ, "", 7000, 0, 2)}},
			want: state{Balance: 7000, Held: 0, EventSeq: 2, Status: succ,
				Entries:     []entry{{-3000, true}},
				Transitions: []transition{accepted, {2, "accepted", "succeeded", actor, ""}}},
		},
		{
			name:   "failed releases the hold without an entry",
			amount: -3000,
			steps:  []step{{fail, "declined: card blocked", ledger.Applied, acc, ev(fail, "declined: card blocked", balance, 0, 2)}},
			want: state{Balance: balance, Held: 0, EventSeq: 2, Status: fail, FailureReason: "declined: card blocked",
				Transitions: []transition{accepted, {2, "accepted", "failed", actor, "declined: card blocked"}}},
		},
		{
			name:   "a repeated success changes nothing and returns the recorded event",
			amount: -3000,
			steps: []step{
				{succ, "", ledger.Applied, acc, ev(succ, "", 7000, 0, 2)},
				{succ, "", ledger.Duplicate, succ, ev(succ, "", 7000, 0, 2)},
			},
			want: state{Balance: 7000, Held: 0, EventSeq: 2, Status: succ,
				Entries:     []entry{{-3000, true}},
				Transitions: []transition{accepted, {2, "accepted", "succeeded", actor, ""}}},
		},
		{
			// The rebuilt event keeps the recorded reason and user_seq, and
			// shows the wallet as it is now.
			name:   "a repeated change is rebuilt from the audit trail after later changes",
			amount: -3000,
			steps: []step{
				{unk, "processor timeout", ledger.Applied, acc, ev(unk, "processor timeout", balance, 3000, 2)},
				{succ, "", ledger.Applied, unk, ev(succ, "", 7000, 0, 3)},
				{succ, "again", ledger.Duplicate, succ, ev(succ, "", 7000, 0, 3)},
			},
			want: state{Balance: 7000, Held: 0, EventSeq: 3, Status: succ,
				Entries: []entry{{-3000, true}},
				Transitions: []transition{accepted,
					{2, "accepted", "unknown", actor, "processor timeout"},
					{3, "unknown", "succeeded", actor, ""}}},
		},
		{
			name:   "processing then succeeded; a late processing is ignored",
			amount: -3000,
			steps: []step{
				{proc, "", ledger.Applied, acc, ev(proc, "", balance, 3000, 2)},
				{succ, "", ledger.Applied, proc, ev(succ, "", 7000, 0, 3)},
				{proc, "", ledger.OutOfOrder, succ, nil},
			},
			want: state{Balance: 7000, Held: 0, EventSeq: 3, Status: succ,
				Entries: []entry{{-3000, true}},
				Transitions: []transition{accepted,
					{2, "accepted", "processing", actor, ""},
					{3, "processing", "succeeded", actor, ""}}},
		},
		{
			name:   "unknown keeps the hold until resolved",
			amount: -3000,
			steps:  []step{{unk, "processor timeout", ledger.Applied, acc, ev(unk, "processor timeout", balance, 3000, 2)}},
			want: state{Balance: balance, Held: 3000, EventSeq: 2, Status: unk, Hold: 3000, FailureReason: "processor timeout",
				Transitions: []transition{accepted, {2, "accepted", "unknown", actor, "processor timeout"}}},
		},
		{
			// A resolution's reason is audited and announced, but a
			// succeeded payment has no failure reason.
			name:   "unknown resolved to succeeded settles and clears the failure reason",
			amount: -3000,
			steps: []step{
				{unk, "processor timeout", ledger.Applied, acc, ev(unk, "processor timeout", balance, 3000, 2)},
				{succ, "found in the statement", ledger.Applied, unk, ev(succ, "found in the statement", 7000, 0, 3)},
			},
			want: state{Balance: 7000, Held: 0, EventSeq: 3, Status: succ,
				Entries: []entry{{-3000, true}},
				Transitions: []transition{accepted,
					{2, "accepted", "unknown", actor, "processor timeout"},
					{3, "unknown", "succeeded", actor, "found in the statement"}}},
		},
		{
			name:   "a final status never changes",
			amount: -3000,
			steps: []step{
				{fail, "declined", ledger.Applied, acc, ev(fail, "declined", balance, 0, 2)},
				{succ, "", ledger.OutOfOrder, fail, nil},
				{unk, "late", ledger.OutOfOrder, fail, nil},
			},
			want: state{Balance: balance, Held: 0, EventSeq: 2, Status: fail, FailureReason: "declined",
				Transitions: []transition{accepted, {2, "accepted", "failed", actor, "declined"}}},
		},
		{
			name:   "a top-up credits the balance",
			amount: 5000,
			steps: []step{{succ, "", ledger.Applied, acc, &ledger.Event{PaymentID: paymentID, PaymentUID: paymentUID, UserID: userID, MerchantID: merchant,
				Amount: 5000, Status: succ, Balance: 15000, Held: 0, UserSeq: 2}}},
			want: state{Balance: 15000, Held: 0, EventSeq: 2, Status: succ,
				Entries:     []entry{{5000, true}},
				Transitions: []transition{accepted, {2, "accepted", "succeeded", actor, ""}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pool := seed(t, tt.amount)
			for i, st := range tt.steps {
				res, err := apply(t, pool, ledger.Transition{PaymentID: paymentID, UserID: userID, To: st.to, Actor: actor, Reason: st.reason})
				if err != nil {
					t.Fatalf("step %d (%s): %v", i, st.to, err)
				}
				if res.Change != st.wantChange || res.From != st.wantFrom {
					t.Errorf("step %d (%s): change %v from %s, want %v from %s", i, st.to, res.Change, res.From, st.wantChange, st.wantFrom)
				}
				if diff := cmp.Diff(st.wantEvent, withoutTime(t, res.Event)); diff != "" {
					t.Errorf("step %d (%s): event (-want +got):\n%s", i, st.to, diff)
				}
			}
			if diff := cmp.Diff(tt.want, readState(t, pool)); diff != "" {
				t.Errorf("state (-want +got):\n%s", diff)
			}
		})
	}
}

// TestApplyRepeatWithoutRecord: a payment whose status was set without an
// audited transition (e.g. seeded) has no event to rebuild.
func TestApplyRepeatWithoutRecord(t *testing.T) {
	t.Parallel()
	pool := seed(t, -3000)
	if _, err := pool.Exec(context.Background(), `
		UPDATE payments SET status = 'succeeded', hold = 0 WHERE id = 100000;
		UPDATE wallets SET held = 0 WHERE user_id = 7`); err != nil {
		t.Fatal(err)
	}
	res, err := apply(t, pool, ledger.Transition{PaymentID: paymentID, UserID: userID, To: payment.StatusSucceeded, Actor: actor})
	if err != nil {
		t.Fatal(err)
	}
	if res.Change != ledger.Duplicate || res.Event != nil {
		t.Errorf("change %v, event %+v; want duplicate without an event", res.Change, res.Event)
	}
}

// TestApplyWithoutUser: a transition naming no user applies to the payment
// whoever owns it.
func TestApplyWithoutUser(t *testing.T) {
	t.Parallel()
	pool := seed(t, -3000)
	res, err := apply(t, pool, ledger.Transition{PaymentID: paymentID, To: payment.StatusFailed, Actor: actor, Reason: "declined"})
	if err != nil {
		t.Fatal(err)
	}
	want := ev(payment.StatusFailed, "declined", balance, 0, 2)
	if res.Change != ledger.Applied {
		t.Errorf("change %v, want applied", res.Change)
	}
	if diff := cmp.Diff(want, withoutTime(t, res.Event)); diff != "" {
		t.Errorf("event (-want +got):\n%s", diff)
	}
}

func TestApplyRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		tr   ledger.Transition
		want error
	}{
		{"unknown payment", ledger.Transition{PaymentID: 999, UserID: userID, To: payment.StatusSucceeded}, ledger.ErrPaymentNotFound},
		{"unknown payment, no user named", ledger.Transition{PaymentID: 1, To: payment.StatusFailed}, ledger.ErrPaymentNotFound},
		{"payment of another user", ledger.Transition{PaymentID: paymentID, UserID: 8, To: payment.StatusSucceeded}, ledger.ErrUserMismatch},
		{"payment of another user, failing it", ledger.Transition{PaymentID: paymentID, UserID: 8, To: payment.StatusFailed}, ledger.ErrUserMismatch},
		{"payment of another database (same id, other uid)", ledger.Transition{PaymentID: paymentID, PaymentUID: uuid.MustParse("0193a1b2-c3d4-7e5f-8a9b-000000000001"), UserID: userID, To: payment.StatusSucceeded}, ledger.ErrStale},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pool := seed(t, -3000)
			tt.tr.Actor = actor
			_, err := apply(t, pool, tt.tr)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			want := state{Balance: balance, Held: 3000, EventSeq: 1, Status: payment.StatusAccepted, Hold: 3000,
				Transitions: []transition{accepted}}
			if diff := cmp.Diff(want, readState(t, pool)); diff != "" {
				t.Errorf("state changed (-want +got):\n%s", diff)
			}
		})
	}
}

// withoutTime returns a copy of ev without its OccurredAt, after checking
// that it has one.
func withoutTime(t *testing.T, ev *ledger.Event) *ledger.Event {
	t.Helper()
	if ev == nil {
		return nil
	}
	if ev.OccurredAt.IsZero() {
		t.Errorf("event %s has no occurred_at", ev.ID())
	}
	c := *ev
	c.OccurredAt = time.Time{}
	return &c
}

func readState(t *testing.T, pool *pgxpool.Pool) state {
	t.Helper()
	ctx := context.Background()
	var s state
	if err := pool.QueryRow(ctx, `SELECT balance, held, event_seq FROM wallets WHERE user_id = $1`, userID).
		Scan(&s.Balance, &s.Held, &s.EventSeq); err != nil {
		t.Fatal(err)
	}
	if err := pool.QueryRow(ctx, `SELECT status, hold, failure_reason FROM payments WHERE id = $1`, paymentID).
		Scan(&s.Status, &s.Hold, &s.FailureReason); err != nil {
		t.Fatal(err)
	}
	rows, _ := pool.Query(ctx, `
		SELECT e.amount, e.occurred_at = p.created_at
		FROM entries e JOIN payments p ON p.id = e.payment_id ORDER BY e.id`)
	entries, err := pgx.CollectRows(rows, pgx.RowToStructByPos[entry])
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) > 0 {
		s.Entries = entries
	}
	rows, _ = pool.Query(ctx, `
		SELECT user_seq, from_status, to_status, actor, reason
		FROM payment_transitions WHERE payment_id = $1 ORDER BY user_seq`, paymentID)
	s.Transitions, err = pgx.CollectRows(rows, pgx.RowToStructByPos[transition])
	if err != nil {
		t.Fatal(err)
	}
	return s
}
