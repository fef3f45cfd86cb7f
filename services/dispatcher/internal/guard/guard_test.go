package guard

import (
	"context"
	"errors"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/finsvc/finance/pkg/payment"
	"github.com/finsvc/finance/pkg/pgtest"
	"github.com/finsvc/finance/pkg/testkit"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// seedPayment inserts payment id in status, and returns its uid.
func seedPayment(t testing.TB, pool *pgxpool.Pool, id int64, status payment.Status) uuid.UUID {
	t.Helper()
	for _, q := range []string{
		`INSERT INTO merchants (id, name) VALUES (1, 'test') ON CONFLICT DO NOTHING`,
		`INSERT INTO wallets (user_id) VALUES (1) ON CONFLICT DO NOTHING`,
	} {
		if _, err := pool.Exec(context.Background(), q); err != nil {
			t.Fatal(err)
		}
	}
	uid := payment.NewUID()
	if _, err := pool.Exec(context.Background(), `INSERT INTO payments (id, uid, user_id, merchant_id, amount, status, idempotency_key, request_hash)
		VALUES ($1, $2, 1, 1, 100, $3, $4, '')`, id, uid, status, "k-"+strconv.FormatInt(id, 10)); err != nil {
		t.Fatal(err)
	}
	return uid
}

// bundle is what a guard test needs besides the guard: the database.
type bundle struct {
	pool *pgxpool.Pool
}

// setup returns the guard of replica-a, with claims or not, over a
// migrated database of the test's own.
func setup(tb testing.TB, claims bool) (*Guard, *bundle) {
	tb.Helper()
	b := &bundle{pool: pgtest.NewPool(tb)}
	return New(b.pool, "replica-a", claims, nil), b
}

func admit(t *testing.T, g *Guard, id int64, uid uuid.UUID) Verdict {
	t.Helper()
	v, err := g.Admit(t.Context(), id, uid)
	if err != nil {
		t.Fatalf("admit %d: %v", id, err)
	}
	return v
}

// Only a payment this database accepted, under the same id and uid, and
// that is not final yet, may be sent; with or without claims.
func TestAdmitOnlyOpenPaymentsOfThisDatabase(t *testing.T) {
	t.Parallel()
	for _, claims := range []bool{false, true} {
		t.Run("claims="+strconv.FormatBool(claims), func(t *testing.T) {
			t.Parallel()
			g, b := setup(t, claims)
			pool := b.pool
			open := map[payment.Status]int64{payment.StatusAccepted: 100001, payment.StatusProcessing: 100002, payment.StatusUnknown: 100003}
			for status, id := range open {
				uid := seedPayment(t, pool, id, status)
				if v := admit(t, g, id, uid); v != Send {
					t.Errorf("%s payment: %v, want send", status, v)
				}
			}
			for status, id := range map[payment.Status]int64{payment.StatusSucceeded: 100004, payment.StatusFailed: 100005} {
				uid := seedPayment(t, pool, id, status)
				if v := admit(t, g, id, uid); v != Final {
					t.Errorf("%s payment: %v, want final", status, v)
				}
			}
			// The same id with another uid is a record of another database
			// (ids repeat after a restore); an id the database never had too.
			if v := admit(t, g, 100001, payment.NewUID()); v != Stale {
				t.Errorf("known id, other uid: %v, want stale", v)
			}
			if v := admit(t, g, 424242, payment.NewUID()); v != Stale {
				t.Errorf("unknown id: %v, want stale", v)
			}
			var n int
			if err := pool.QueryRow(t.Context(), `SELECT count(*) FROM dispatch_claims`).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if want := map[bool]int{false: 0, true: len(open)}[claims]; n != want {
				t.Errorf("%d claims written, want %d (only open payments are claimed, and only with claims)", n, want)
			}
		})
	}
}

// With the proposed API a payment that may have been sent (processing or
// unknown) and was accepted longer ago than the processor keeps idempotency
// keys is not sent again: its key may be forgotten, and a second call could
// execute it twice. Accepted payments, younger ones, and the as-is API
// (whose claim decides) are unaffected.
func TestAdmitKeyExpired(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t)
	tests := []struct {
		id        int64
		status    payment.Status
		age       time.Duration
		retention time.Duration // 0: the default, 24h
		claims    bool
		want      Verdict
	}{
		{200001, payment.StatusProcessing, 25 * time.Hour, 0, false, KeyExpired},
		{200002, payment.StatusUnknown, 25 * time.Hour, 0, false, KeyExpired},
		{200003, payment.StatusAccepted, 25 * time.Hour, 0, false, Send},
		{200004, payment.StatusProcessing, 23 * time.Hour, 0, false, Send},
		{200005, payment.StatusUnknown, time.Minute, 0, false, Send},
		{200006, payment.StatusProcessing, 3 * time.Hour, 2 * time.Hour, false, KeyExpired},
		{200007, payment.StatusUnknown, time.Hour, 2 * time.Hour, false, Send},
		{200008, payment.StatusSucceeded, 25 * time.Hour, 0, false, Final},
		{200009, payment.StatusProcessing, 25 * time.Hour, 0, true, Send},
	}
	for _, tt := range tests {
		uid := seedPayment(t, pool, tt.id, tt.status)
		if _, err := pool.Exec(t.Context(), `UPDATE payments SET created_at = now() - $2::bigint * interval '1 microsecond' WHERE id = $1`,
			tt.id, tt.age.Microseconds()); err != nil {
			t.Fatal(err)
		}
		g := New(pool, "replica-a", tt.claims, nil)
		g.KeyRetention = tt.retention
		if v := admit(t, g, tt.id, uid); v != tt.want {
			t.Errorf("%s payment accepted %v ago, retention %v, claims %v: %v, want %v", tt.status, tt.age, tt.retention, tt.claims, v, tt.want)
		}
	}
}

func TestClaimOnce(t *testing.T) {
	t.Parallel()
	a, bun := setup(t, true)
	pool := bun.pool
	uid := seedPayment(t, pool, 100001, payment.StatusAccepted)
	b := New(pool, "replica-b", true, nil)
	if v := admit(t, a, 100001, uid); v != Send {
		t.Fatalf("first admit = %v; want send", v)
	}
	for _, g := range []*Guard{a, b} {
		if v := admit(t, g, 100001, uid); v != Claimed {
			t.Fatalf("second admit by %s = %v; want claimed", g.by, v)
		}
	}
	var by string
	if err := pool.QueryRow(t.Context(), `SELECT claimed_by FROM dispatch_claims WHERE payment_id = 100001`).Scan(&by); err != nil || by != "replica-a" {
		t.Fatalf("claimed_by = %q, %v; want replica-a", by, err)
	}
	// Another replica cannot release it; its claimant can.
	if err := b.Release(t.Context(), 100001); err != nil {
		t.Fatal(err)
	}
	if v := admit(t, b, 100001, uid); v != Claimed {
		t.Fatal("claim released by another replica")
	}
	if err := a.Release(t.Context(), 100001); err != nil {
		t.Fatal(err)
	}
	if v := admit(t, b, 100001, uid); v != Send {
		t.Fatalf("admit after release = %v; want send", v)
	}
}

// TestAdmissionsShareAStatement: admissions that wait together are decided
// in one shared statement, each as if alone: open payments are sent (a
// payment asked for twice at once is claimed once), final ones are not,
// unknown ones and other databases' are stale.
func TestAdmissionsShareAStatement(t *testing.T) {
	t.Parallel()
	g, bun := setup(t, true)
	type ask struct {
		id   int64
		uid  uuid.UUID
		want Verdict
	}
	var asks []ask
	for i := range int64(10) {
		id := 200000 + i
		asks = append(asks, ask{id, seedPayment(t, bun.pool, id, payment.StatusAccepted), Send})
	}
	for i := range int64(5) {
		id := 200100 + i
		asks = append(asks, ask{id, seedPayment(t, bun.pool, id, payment.StatusSucceeded), Final})
	}
	asks = append(asks,
		ask{299999, payment.NewUID(), Stale},                                       // no such payment
		ask{200000, payment.NewUID(), Stale},                                       // another database's payment 200000
		ask{200001, asks[1].uid, Claimed},                                          // payment 200001 a second time
		ask{200105, seedPayment(t, bun.pool, 200105, payment.StatusUnknown), Send}, // unknown, claimed now
	)
	release := g.shared.Hold()
	got := make([]Verdict, len(asks))
	errs := make([]error, len(asks))
	done := make(chan struct{})
	go func() {
		defer close(done)
		var wg sync.WaitGroup
		for i, a := range asks {
			wg.Go(func() { got[i], errs[i] = g.Admit(t.Context(), a.id, a.uid) })
		}
		wg.Wait()
	}()
	testkit.EventuallyWithin(t, 10*time.Second, "every admission waiting", func() bool { return g.shared.Waiting() == len(asks) })
	release()
	<-done
	// Payment 200001 asked twice: whichever came first was sent.
	if got[1] == Claimed && got[len(asks)-2] == Send {
		got[1], got[len(asks)-2] = Send, Claimed
	}
	for i, a := range asks {
		if errs[i] != nil || got[i] != a.want {
			t.Errorf("admit %d (ask %d) = %v, %v; want %v", a.id, i, got[i], errs[i], a.want)
		}
	}
	if statements, calls := g.shared.Stats(); statements != 1 || calls != int64(len(asks)) {
		t.Errorf("%d shared statements for %d admissions, want 1 for %d", statements, calls, len(asks))
	}
	var claims int
	if err := bun.pool.QueryRow(t.Context(), `SELECT count(*) FROM dispatch_claims WHERE claimed_by = 'replica-a'`).Scan(&claims); err != nil || claims != 11 {
		t.Errorf("%d claims, %v; want 11 (10 accepted, 1 unknown)", claims, err)
	}
}

// A database that cannot be reached is retried for RetryFor, then reported:
// the caller does not send the payment.
func TestAdmitFailureIsBoundedAndContextBound(t *testing.T) {
	t.Parallel()
	cfg, err := pgxpool.ParseConfig("postgres://nobody@127.0.0.1:1/none?connect_timeout=1")
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	g := New(pool, "replica-a", true, nil)
	g.RetryFor = 300 * time.Millisecond
	g.BackoffInitial = 10 * time.Millisecond
	start := time.Now()
	if v, err := g.Admit(t.Context(), 1, payment.NewUID()); v != 0 || err == nil {
		t.Fatalf("admit with the database down = %v, %v; want an error", v, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("admit failed after %v, want about RetryFor", d)
	}

	g.RetryFor = time.Hour
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	start = time.Now()
	if v, err := g.Admit(ctx, 1, payment.NewUID()); v != 0 || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("admit with the database down and ctx ending = %v, %v; want the context's error", v, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("admit returned %v after its context ended, want at once", d)
	}
}

// BenchmarkAdmit measures the guard's cost per payment: one statement on
// PostgreSQL on this machine (go test -bench Admit ./services/dispatcher/internal/guard/).
func BenchmarkAdmit(b *testing.B) {
	for _, claims := range []bool{false, true} {
		b.Run("claims="+strconv.FormatBool(claims), func(b *testing.B) {
			g, bun := setup(b, claims)
			const n = 10000
			ids := make([]int64, n)
			uids := make([]uuid.UUID, n)
			for i := range n {
				ids[i] = int64(100000 + i)
				uids[i] = seedPayment(b, bun.pool, ids[i], payment.StatusAccepted)
			}
			b.ResetTimer()
			i := 0
			for b.Loop() {
				if _, err := g.Admit(context.Background(), ids[i%n], uids[i%n]); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}
