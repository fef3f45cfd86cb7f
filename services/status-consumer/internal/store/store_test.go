package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/finsvc/finance/pkg/payment"
	"github.com/finsvc/finance/pkg/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

const (
	userID    = 7
	paymentID = 100000
	merchant  = 2
	balance   = 10000
)

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
		INSERT INTO payments (id, user_id, merchant_id, amount, status, idempotency_key, request_hash, hold, created_at)
		VALUES (100000, 7, 2, %[1]d, 'accepted', 'k-1', 'h', %[2]d, '2026-01-02T03:04:05Z');
		INSERT INTO payment_transitions (payment_id, user_id, user_seq, from_status, to_status, actor)
		VALUES (100000, 7, 1, '', 'accepted', 'gateway');`, amount, hold))
	if err != nil {
		t.Fatalf("seed: %v", err)
	}
	return pool
}

type step struct {
	status     payment.Status
	reason     string
	wantChange Change
	wantEvent  *Event // OccurredAt is not compared
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

func ev(status payment.Status, reason string, bal, held, seq int64) *Event {
	return &Event{PaymentID: paymentID, UserID: userID, MerchantID: merchant, Amount: -3000,
		Status: status, Reason: reason, Balance: bal, Held: held, UserSeq: seq}
}

var accepted = transition{1, "", "accepted", "gateway", ""}

func TestApplyOutcome(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		amount int64
		steps  []step
		want   state
	}{
		{
			name:   "succeeded settles the debit and releases the hold",
			amount: -3000,
			steps:  []step{{payment.StatusSucceeded, "", Applied, ev(payment.StatusSucceeded, "", 7000, 0, 2)}},
			want: state{Balance: 7000, Held: 0, EventSeq: 2, Status: payment.StatusSucceeded,
				Entries:     []entry{{-3000, true}},
				Transitions: []transition{accepted, {2, "accepted", "succeeded", Actor, ""}}},
		},
		{
			name:   "failed releases the hold without an entry",
			amount: -3000,
			steps:  []step{{payment.StatusFailed, "declined: card blocked", Applied, ev(payment.StatusFailed, "declined: card blocked", balance, 0, 2)}},
			want: state{Balance: balance, Held: 0, EventSeq: 2, Status: payment.StatusFailed, FailureReason: "declined: card blocked",
				Transitions: []transition{accepted, {2, "accepted", "failed", Actor, "declined: card blocked"}}},
		},
		{
			name:   "a redelivered success changes nothing and returns the same event",
			amount: -3000,
			steps: []step{
				{payment.StatusSucceeded, "", Applied, ev(payment.StatusSucceeded, "", 7000, 0, 2)},
				{payment.StatusSucceeded, "", Duplicate, ev(payment.StatusSucceeded, "", 7000, 0, 2)},
			},
			want: state{Balance: 7000, Held: 0, EventSeq: 2, Status: payment.StatusSucceeded,
				Entries:     []entry{{-3000, true}},
				Transitions: []transition{accepted, {2, "accepted", "succeeded", Actor, ""}}},
		},
		{
			name:   "processing then succeeded; a late processing is ignored",
			amount: -3000,
			steps: []step{
				{payment.StatusProcessing, "", Applied, ev(payment.StatusProcessing, "", balance, 3000, 2)},
				{payment.StatusSucceeded, "", Applied, ev(payment.StatusSucceeded, "", 7000, 0, 3)},
				{payment.StatusProcessing, "", OutOfOrder, nil},
			},
			want: state{Balance: 7000, Held: 0, EventSeq: 3, Status: payment.StatusSucceeded,
				Entries: []entry{{-3000, true}},
				Transitions: []transition{accepted,
					{2, "accepted", "processing", Actor, ""},
					{3, "processing", "succeeded", Actor, ""}}},
		},
		{
			name:   "unknown keeps the hold until resolved",
			amount: -3000,
			steps:  []step{{payment.StatusUnknown, "processor timeout", Applied, ev(payment.StatusUnknown, "processor timeout", balance, 3000, 2)}},
			want: state{Balance: balance, Held: 3000, EventSeq: 2, Status: payment.StatusUnknown, Hold: 3000, FailureReason: "processor timeout",
				Transitions: []transition{accepted, {2, "accepted", "unknown", Actor, "processor timeout"}}},
		},
		{
			name:   "unknown resolved to succeeded settles and clears the reason",
			amount: -3000,
			steps: []step{
				{payment.StatusUnknown, "processor timeout", Applied, ev(payment.StatusUnknown, "processor timeout", balance, 3000, 2)},
				{payment.StatusSucceeded, "", Applied, ev(payment.StatusSucceeded, "", 7000, 0, 3)},
			},
			want: state{Balance: 7000, Held: 0, EventSeq: 3, Status: payment.StatusSucceeded,
				Entries: []entry{{-3000, true}},
				Transitions: []transition{accepted,
					{2, "accepted", "unknown", Actor, "processor timeout"},
					{3, "unknown", "succeeded", Actor, ""}}},
		},
		{
			name:   "a final status never changes",
			amount: -3000,
			steps: []step{
				{payment.StatusFailed, "declined", Applied, ev(payment.StatusFailed, "declined", balance, 0, 2)},
				{payment.StatusSucceeded, "", OutOfOrder, nil},
			},
			want: state{Balance: balance, Held: 0, EventSeq: 2, Status: payment.StatusFailed, FailureReason: "declined",
				Transitions: []transition{accepted, {2, "accepted", "failed", Actor, "declined"}}},
		},
		{
			name:   "a top-up credits the balance",
			amount: 5000,
			steps: []step{{payment.StatusSucceeded, "", Applied, &Event{PaymentID: paymentID, UserID: userID, MerchantID: merchant,
				Amount: 5000, Status: payment.StatusSucceeded, Balance: 15000, Held: 0, UserSeq: 2}}},
			want: state{Balance: 15000, Held: 0, EventSeq: 2, Status: payment.StatusSucceeded,
				Entries:     []entry{{5000, true}},
				Transitions: []transition{accepted, {2, "accepted", "succeeded", Actor, ""}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pool := seed(t, tt.amount)
			s := New(pool)
			for i, st := range tt.steps {
				res, err := s.ApplyOutcome(context.Background(), Outcome{PaymentID: paymentID, UserID: userID, Status: st.status, Reason: st.reason})
				if err != nil {
					t.Fatalf("step %d (%s): %v", i, st.status, err)
				}
				if res.Change != st.wantChange {
					t.Errorf("step %d (%s): change = %v, want %v", i, st.status, res.Change, st.wantChange)
				}
				if diff := cmp.Diff(st.wantEvent, res.Event, cmpopts.IgnoreFields(Event{}, "OccurredAt")); diff != "" {
					t.Errorf("step %d (%s): event (-want +got):\n%s", i, st.status, diff)
				}
				if res.Event != nil && res.Event.OccurredAt.IsZero() {
					t.Errorf("step %d (%s): event has no occurred_at", i, st.status)
				}
			}
			if diff := cmp.Diff(tt.want, readState(t, pool)); diff != "" {
				t.Errorf("state (-want +got):\n%s", diff)
			}
		})
	}
}

func TestApplyOutcomeRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		outcome Outcome
		want    error
	}{
		{"unknown payment", Outcome{PaymentID: 999, UserID: userID, Status: payment.StatusSucceeded}, ErrPaymentNotFound},
		{"payment of another user", Outcome{PaymentID: paymentID, UserID: 8, Status: payment.StatusSucceeded}, ErrUserMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pool := seed(t, -3000)
			_, err := New(pool).ApplyOutcome(context.Background(), tt.outcome)
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
