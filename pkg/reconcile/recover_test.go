package reconcile_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/finsvc/finance/pkg/payment"
	"github.com/finsvc/finance/pkg/reconcile"
	"github.com/finsvc/finance/pkg/verify"
)

// lostFixture is user 10's database (balance 10000, payment 901 held) and
// a statement with 901's execution and two executions this database lost:
// a debit of 700 and a top-up of 2500.
type lostFixture struct {
	pool       *pgxpool.Pool
	debit, top uuid.UUID
	stmt       verify.SliceStatement
	at         time.Time
}

func newLostFixture(t *testing.T, extra ...verify.Execution) lostFixture {
	t.Helper()
	old := 10 * time.Minute
	f := lostFixture{
		pool:  seed(t, []unknownPayment{{901, -300, old, old, "processing"}}),
		debit: payment.NewUID(), top: payment.NewUID(),
		at: time.Now().Add(-5 * time.Minute).UTC().Truncate(time.Microsecond),
	}
	f.stmt = verify.SliceStatement{
		{Seq: 1, ID: "pay_1", IdempotencyKey: payment.ProcessorKey(f.debit), UserID: user, Amount: -700, Reference: "901", API: "proposed", ExecutedAt: f.at},
		{Seq: 2, ID: "pay_2", IdempotencyKey: payment.ProcessorKey(f.top), UserID: user, Amount: 2500, Reference: "902", API: "proposed", ExecutedAt: f.at.Add(time.Second)},
	}
	for i, e := range extra {
		e.Seq, e.API, e.ExecutedAt = int64(10+i), "proposed", f.at
		f.stmt = append(f.stmt, e)
	}
	return f
}

// counts are the rows Recover writes.
type counts struct{ Payments, Entries, Transitions, Recoveries, Outbox, Balance, Held int64 }

func readCounts(t *testing.T, pool *pgxpool.Pool) counts {
	t.Helper()
	var c counts
	if err := pool.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM payments), (SELECT count(*) FROM entries),
		(SELECT count(*) FROM payment_transitions), (SELECT count(*) FROM recoveries), (SELECT count(*) FROM outbox),
		balance, held FROM wallets WHERE user_id = $1`, user).
		Scan(&c.Payments, &c.Entries, &c.Transitions, &c.Recoveries, &c.Outbox, &c.Balance, &c.Held); err != nil {
		t.Fatal(err)
	}
	return c
}

func recoverText(r reconcile.RecoverReport) string {
	var b strings.Builder
	_ = r.WriteText(&b)
	return b.String()
}

func TestRecoverDryRunThenApply(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newLostFixture(t)
	if _, err := f.pool.Exec(ctx, `INSERT INTO restores (actor, schema_version_before) VALUES ('cli:alice', 4)`); err != nil {
		t.Fatal(err)
	}
	before := readCounts(t, f.pool)

	dry, err := reconcile.Recover(ctx, f.pool, f.stmt, reconcile.RecoverOptions{Actor: "cli:test", Emit: emitToOutbox})
	if err != nil {
		t.Fatal(err)
	}
	out := recoverText(dry)
	if dry.Applied || len(dry.Recovered) != 2 || dry.MerchantID != 1 || dry.MerchantName != "Pleo" || dry.RestoreID == 0 ||
		dry.Recovered[0].BalanceBefore != 10000 || dry.Recovered[0].BalanceAfter != 9300 || dry.Recovered[1].BalanceAfter != 11800 ||
		!strings.Contains(out, "dry run: nothing changed") || !strings.Contains(out, "would re-create 2 payments") ||
		!strings.Contains(out, payment.ProcessorKey(f.debit)+"  10    -700") {
		t.Errorf("dry run: %+v\n%s", dry, out)
	}
	if diff := cmp.Diff(before, readCounts(t, f.pool)); diff != "" {
		t.Fatalf("a dry run changed the database (-before +after):\n%s", diff)
	}

	rep, err := reconcile.Recover(ctx, f.pool, f.stmt, reconcile.RecoverOptions{Actor: "cli:test", Emit: emitToOutbox, Apply: true})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Applied || len(rep.Recovered) != 2 || rep.Recovered[0].PaymentID == 0 {
		t.Fatalf("apply: %+v\n%s", rep, recoverText(rep))
	}
	want := counts{Payments: before.Payments + 2, Entries: before.Entries + 2, Transitions: before.Transitions + 2,
		Recoveries: 2, Outbox: 2, Balance: 11800, Held: 300}
	if diff := cmp.Diff(want, readCounts(t, f.pool)); diff != "" {
		t.Errorf("after apply (-want +got):\n%s", diff)
	}
	// The debit's payment: its uid, the processor's user and amount, Pleo,
	// recovered, succeeded at the execution's time, audited.
	var (
		p struct {
			ID, UserID, MerchantID, Amount, Hold int64
			Status, Source, Key                  string
			CreatedAt                            time.Time
		}
		tr struct{ From, To, Actor, Reason string }
		rc struct {
			Key, Ref, Actor string
			RestoreID       int64
		}
	)
	if err := f.pool.QueryRow(ctx, `SELECT id, user_id, merchant_id, amount, hold, status, source, idempotency_key, created_at
		FROM payments WHERE uid = $1`, f.debit).Scan(&p.ID, &p.UserID, &p.MerchantID, &p.Amount, &p.Hold, &p.Status, &p.Source, &p.Key, &p.CreatedAt); err != nil {
		t.Fatal(err)
	}
	if p.ID != rep.Recovered[0].PaymentID || p.UserID != user || p.MerchantID != 1 || p.Amount != -700 || p.Hold != 0 ||
		p.Status != "succeeded" || p.Source != "recovered" || p.Key != "recovered:"+payment.ProcessorKey(f.debit) || !p.CreatedAt.Equal(f.at) {
		t.Errorf("recovered payment: %+v", p)
	}
	if err := f.pool.QueryRow(ctx, `SELECT from_status, to_status, actor, reason FROM payment_transitions WHERE payment_id = $1`, p.ID).
		Scan(&tr.From, &tr.To, &tr.Actor, &tr.Reason); err != nil {
		t.Fatal(err)
	}
	if tr.From != "accepted" || tr.To != "succeeded" || tr.Actor != "cli:test" ||
		!strings.HasPrefix(tr.Reason, "recovered: the processor executed "+payment.ProcessorKey(f.debit)+" as pay_1") {
		t.Errorf("audit: %+v", tr)
	}
	if err := f.pool.QueryRow(ctx, `SELECT processor_key, processor_ref, actor, restore_id FROM recoveries WHERE payment_id = $1`, p.ID).
		Scan(&rc.Key, &rc.Ref, &rc.Actor, &rc.RestoreID); err != nil {
		t.Fatal(err)
	}
	if rc.Key != payment.ProcessorKey(f.debit) || rc.Ref != "pay_1" || rc.Actor != "cli:test" || rc.RestoreID != dry.RestoreID {
		t.Errorf("recoveries row: %+v", rc)
	}

	// The money matches the processor again. 901, processing for 10
	// minutes and not executed there, is the fixture's, not a violation here.
	vcfg := verify.DefaultConfig()
	vcfg.StuckAfter, vcfg.InFlightBound = 0, time.Hour
	vrep, err := verify.New(f.pool, f.stmt, vcfg).Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !vrep.OK() {
		var b strings.Builder
		_ = vrep.WriteText(&b)
		t.Errorf("verify after recover:\n%s", b.String())
	}

	// Nothing is left to recover; a key recovered is refused.
	again, err := reconcile.Recover(ctx, f.pool, f.stmt, reconcile.RecoverOptions{Actor: "cli:test", Apply: true})
	if err != nil || len(again.Recovered) != 0 || !strings.Contains(recoverText(again), "nothing to recover") {
		t.Errorf("second run: %v\n%s", err, recoverText(again))
	}
	_, err = reconcile.Recover(ctx, f.pool, f.stmt, reconcile.RecoverOptions{Actor: "cli:test", Apply: true, Keys: []string{payment.ProcessorKey(f.top)}})
	if wantMsg := "key " + payment.ProcessorKey(f.top) + " is already payment "; !errors.Is(err, reconcile.ErrRecoverRefused) || !strings.Contains(err.Error(), wantMsg) {
		t.Errorf("recover of a recovered key: %v, want %q", err, wantMsg)
	}
}

func TestRecoverKeysAndAmount(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newLostFixture(t)
	amount := int64(2500)
	rep, err := reconcile.Recover(ctx, f.pool, f.stmt, reconcile.RecoverOptions{Actor: "cli:test", Apply: true, MerchantID: 2,
		Keys: []string{payment.ProcessorKey(f.top)}, Amount: &amount})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Recovered) != 1 || rep.Recovered[0].PaymentUID != f.top || rep.MerchantName != "Apple" || rep.RestoreID != 0 {
		t.Errorf("report: %+v", rep)
	}
	var n int64
	_ = f.pool.QueryRow(ctx, `SELECT count(*) FROM payments WHERE uid = $1`, f.debit).Scan(&n)
	if c := readCounts(t, f.pool); c.Recoveries != 1 || c.Balance != 12500 || n != 0 {
		t.Errorf("after recovering one key: %+v, debit payments %d", c, n)
	}
}

func TestRecoverRefuses(t *testing.T) {
	t.Parallel()
	key := func(u uuid.UUID) string { return payment.ProcessorKey(u) }
	stranger, twice, big := payment.NewUID(), payment.NewUID(), payment.NewUID()
	tests := []struct {
		name  string
		extra []verify.Execution
		sql   string
		opts  func(f lostFixture) reconcile.RecoverOptions
		want  string
	}{
		{name: "a key that is already a payment",
			opts: func(lostFixture) reconcile.RecoverOptions {
				return reconcile.RecoverOptions{Keys: []string{keyOf(901)}}
			},
			want: "key " + keyOf(901) + " is already payment 901, nothing to recover"},
		{name: "a key the processor has no execution for",
			opts: func(lostFixture) reconcile.RecoverOptions {
				return reconcile.RecoverOptions{Keys: []string{key(stranger)}}
			},
			want: "the processor's statement has no execution under key " + key(stranger)},
		{name: "another amount than the processor's",
			opts: func(f lostFixture) reconcile.RecoverOptions {
				a := int64(-701)
				return reconcile.RecoverOptions{Keys: []string{key(f.debit)}, Amount: &a}
			},
			want: "the processor executed key %DEBIT% for amount -700, not -701"},
		{name: "an amount without one key",
			opts: func(lostFixture) reconcile.RecoverOptions {
				a := int64(-700)
				return reconcile.RecoverOptions{Amount: &a}
			},
			want: "an amount confirms exactly one key, got 0"},
		{name: "not a payment key",
			opts: func(lostFixture) reconcile.RecoverOptions {
				return reconcile.RecoverOptions{Keys: []string{"payment-100001"}}
			},
			want: `"payment-100001" is not a payment key (want payment-<uid>)`},
		{name: "a user without a wallet",
			extra: []verify.Execution{{ID: "pay_9", IdempotencyKey: key(stranger), UserID: 99, Amount: 100}},
			want:  "user 99 has no wallet here (key " + key(stranger) + "): the user must exist before their payment can be recovered"},
		{name: "a key executed twice",
			extra: []verify.Execution{{ID: "pay_7", IdempotencyKey: key(twice), UserID: user, Amount: 5}, {ID: "pay_8", IdempotencyKey: key(twice), UserID: user, Amount: 5}},
			want:  "key " + key(twice) + " was executed 2 times by the processor (paid twice): recover it by hand"},
		{name: "a debit the wallet cannot take",
			extra: []verify.Execution{{ID: "pay_6", IdempotencyKey: key(big), UserID: user, Amount: -50000}},
			want:  "key " + key(big) + ": user 10's available balance cannot take the processor's debit of 50000"},
		{name: "a merchant that does not exist",
			opts: func(lostFixture) reconcile.RecoverOptions { return reconcile.RecoverOptions{MerchantID: 77} },
			want: "merchant 77 does not exist"},
		{name: "no merchant named Pleo",
			sql:  `UPDATE merchants SET name = 'Pleo Ltd' WHERE id = 1`,
			want: `no merchant is named "Pleo"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			f := newLostFixture(t, tt.extra...)
			if tt.sql != "" {
				if _, err := f.pool.Exec(ctx, tt.sql); err != nil {
					t.Fatal(err)
				}
			}
			before := readCounts(t, f.pool)
			var opts reconcile.RecoverOptions
			if tt.opts != nil {
				opts = tt.opts(f)
			}
			opts.Actor, opts.Apply, opts.Emit = "cli:test", true, emitToOutbox
			_, err := reconcile.Recover(ctx, f.pool, f.stmt, opts)
			want := strings.ReplaceAll(tt.want, "%DEBIT%", key(f.debit))
			if !errors.Is(err, reconcile.ErrRecoverRefused) || !strings.Contains(err.Error(), want) {
				t.Errorf("err = %v\nwant ErrRecoverRefused with %q", err, want)
			}
			// The whole run is refused: the good executions are not recovered either.
			if diff := cmp.Diff(before, readCounts(t, f.pool)); diff != "" {
				t.Errorf("a refused run changed the database (-before +after):\n%s", diff)
			}
		})
	}
}
