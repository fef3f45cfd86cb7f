package ledger_test

import (
	"context"
	"errors"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/finsvc/finance/pkg/ledger"
	"github.com/finsvc/finance/pkg/payment"
	"github.com/finsvc/finance/pkg/pgtest"
	"github.com/finsvc/finance/pkg/postgres"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// seed: user 7 with balance 10000 and payment 100000 of −3000, accepted and
// holding 3000 (user_seq 1).
func seed(t *testing.T) *pgxpool.Pool {
	t.Helper()
	pool := pgtest.NewPool(t)
	if _, err := pool.Exec(context.Background(), `
		INSERT INTO merchants (id, name) VALUES (1, 'Pleo'), (2, 'Apple');
		INSERT INTO wallets (user_id, balance, held, event_seq) VALUES (7, 10000, 3000, 1);
		INSERT INTO payments (id, user_id, merchant_id, amount, status, idempotency_key, request_hash, hold)
		VALUES (100000, 7, 2, -3000, 'accepted', 'k-1', 'h', 3000);
		INSERT INTO payment_transitions (payment_id, user_id, user_seq, from_status, to_status, actor)
		VALUES (100000, 7, 1, '', 'accepted', 'gateway');`); err != nil {
		t.Fatal(err)
	}
	return pool
}

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

func TestApply(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		steps       []payment.Status
		wantChanges []ledger.Change
		wantBalance int64
		wantHeld    int64
		wantSeq     int64
	}{
		{"succeeded settles and releases", []payment.Status{payment.StatusSucceeded},
			[]ledger.Change{ledger.Applied}, 7000, 0, 2},
		{"failed releases", []payment.Status{payment.StatusFailed},
			[]ledger.Change{ledger.Applied}, 10000, 0, 2},
		{"unknown keeps the hold, then resolves", []payment.Status{payment.StatusUnknown, payment.StatusSucceeded},
			[]ledger.Change{ledger.Applied, ledger.Applied}, 7000, 0, 3},
		{"a repeated success changes nothing", []payment.Status{payment.StatusSucceeded, payment.StatusSucceeded},
			[]ledger.Change{ledger.Applied, ledger.Duplicate}, 7000, 0, 2},
		{"a final status never changes", []payment.Status{payment.StatusFailed, payment.StatusSucceeded, payment.StatusUnknown},
			[]ledger.Change{ledger.Applied, ledger.OutOfOrder, ledger.OutOfOrder}, 10000, 0, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pool := seed(t)
			for i, s := range tt.steps {
				res, err := apply(t, pool, ledger.Transition{PaymentID: 100000, UserID: 7, To: s, Actor: "test", Reason: "why"})
				if err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				if res.Change != tt.wantChanges[i] {
					t.Errorf("step %d (%s): change %s, want %s", i, s, res.Change, tt.wantChanges[i])
				}
				if (res.Event != nil) != (res.Change != ledger.OutOfOrder) {
					t.Errorf("step %d: event %+v for change %s", i, res.Event, res.Change)
				}
			}
			var bal, held, seq, audits, entries int64
			if err := pool.QueryRow(context.Background(), `
				SELECT balance, held, event_seq,
				       (SELECT count(*) FROM payment_transitions WHERE actor = 'test' AND reason = 'why'),
				       (SELECT count(*) FROM entries)
				FROM wallets WHERE user_id = 7`).Scan(&bal, &held, &seq, &audits, &entries); err != nil {
				t.Fatal(err)
			}
			if bal != tt.wantBalance || held != tt.wantHeld || seq != tt.wantSeq || audits != tt.wantSeq-1 {
				t.Errorf("balance %d held %d event_seq %d audit rows %d; want %d %d %d %d",
					bal, held, seq, audits, tt.wantBalance, tt.wantHeld, tt.wantSeq, tt.wantSeq-1)
			}
			if wantEntries := map[bool]int64{true: 1, false: 0}[tt.wantBalance == 7000]; entries != wantEntries {
				t.Errorf("%d entries, want %d", entries, wantEntries)
			}
		})
	}
}

func TestApplyErrors(t *testing.T) {
	t.Parallel()
	pool := seed(t)
	if _, err := apply(t, pool, ledger.Transition{PaymentID: 1, To: payment.StatusFailed}); !errors.Is(err, ledger.ErrPaymentNotFound) {
		t.Errorf("missing payment: %v, want ErrPaymentNotFound", err)
	}
	if _, err := apply(t, pool, ledger.Transition{PaymentID: 100000, UserID: 8, To: payment.StatusFailed}); !errors.Is(err, ledger.ErrUserMismatch) {
		t.Errorf("other user: %v, want ErrUserMismatch", err)
	}
}
