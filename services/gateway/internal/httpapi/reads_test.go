package httpapi_test

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/finsvc/finance/pkg/auth"
	"github.com/finsvc/finance/pkg/ledger"
	"github.com/finsvc/finance/pkg/obs"
	"github.com/finsvc/finance/pkg/payment"
	"github.com/finsvc/finance/pkg/postgres"
	"github.com/finsvc/finance/services/gateway/internal/cache"
	"github.com/finsvc/finance/services/gateway/internal/httpapi"
	"github.com/finsvc/finance/services/gateway/internal/push"
	"github.com/finsvc/finance/services/gateway/internal/store"
)

// readGateway is one gateway instance with its own cache and hub, over
// databases other instances share.
type readGateway struct {
	*env
	cache *cache.Cache
	hub   *push.Hub
	reg   *prometheus.Registry
}

// newReadGateway starts a gateway over pool (the primary) and, when read
// is not nil, a replica pool serving feed pages.
func newReadGateway(t testing.TB, pool, read *pgxpool.Pool) *readGateway {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	st := store.New(pool)
	if read != nil {
		st.SetReplica(read)
	}
	batchCtx, stop := context.WithCancel(context.Background())
	wait := st.StartBatching(batchCtx, store.BatchConfig{Workers: 1, MaxBatch: 8, Logger: logger})
	t.Cleanup(func() { stop(); wait() })
	g := &readGateway{
		cache: cache.New(cache.Config{MaxBytes: 1 << 20, MaxEntries: 1000}),
		hub:   push.New(push.Config{}),
		reg:   obs.NewRegistry(),
	}
	g.env = &env{t: t, pool: pool, h: checked(t, httpapi.New(httpapi.Config{
		Logger: logger, Store: st, Verifier: auth.NewVerifier(testSecret), Registry: g.reg,
		Hub: g.hub, Cache: g.cache,
	}))}
	return g
}

// reads returns gateway_reads_total{doc, source}.
func (g *readGateway) reads(doc, source string) float64 {
	g.t.Helper()
	mfs, err := g.reg.Gather()
	if err != nil {
		g.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "gateway_reads_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["doc"] == doc && labels["source"] == source {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// settle carries paymentID to succeeded as the status consumer does.
func settle(t testing.TB, pool *pgxpool.Pool, paymentID int64) {
	t.Helper()
	for _, to := range []payment.Status{payment.StatusProcessing, payment.StatusSucceeded} {
		err := postgres.InTx(context.Background(), pool, func(tx pgx.Tx) error {
			_, err := ledger.Apply(context.Background(), tx, ledger.Transition{PaymentID: paymentID, To: to, Actor: "status-consumer"})
			return err
		})
		if err != nil {
			t.Fatalf("apply %s to payment %d: %v", to, paymentID, err)
		}
	}
}

type balanceResp struct {
	UserID    int64 `json:"user_id"`
	Balance   int64 `json:"balance"`
	Held      int64 `json:"held"`
	Available int64 `json:"available"`
}

type feedResp struct {
	UserID       int64 `json:"user_id"`
	Balance      int64 `json:"balance"`
	Transactions []struct {
		ID     int64 `json:"id"`
		Amount int64 `json:"amount"`
	} `json:"transactions"`
}

func (f feedResp) has(paymentID int64) bool {
	for _, tx := range f.Transactions {
		if tx.ID == paymentID {
			return true
		}
	}
	return false
}

// TestReadYourWritesAcrossGateways: a client pays on gateway A and sees
// its payment succeed there; its next feed and balance on gateway B, whose
// cache holds the page and balance from before and which never receives
// the event, include the payment.
func TestReadYourWritesAcrossGateways(t *testing.T) {
	t.Parallel()
	a := newReadGateway(t, newEnv(t).pool, nil)
	b := newReadGateway(t, a.pool, nil)
	a.wallet(42, 10_000)
	a.entry(42, 1000, 1, 10_000, time.Unix(1700000000, 0))
	tok := token(t, 42, false)

	// Warm B's cache; the second reads are cache hits with the same bytes.
	feed1 := b.conditional("/v1/users/42/feed", tok, "")
	bal1 := b.conditional("/v1/users/42/balance", tok, "")
	wantFull(t, "B feed", feed1)
	wantFull(t, "B balance", bal1)
	if again := b.conditional("/v1/users/42/feed", tok, ""); again.Body.String() != feed1.Body.String() {
		t.Fatalf("cached feed %q differs from the first %q", again.Body.String(), feed1.Body.String())
	}
	b.conditional("/v1/users/42/balance", tok, "")
	if hits := b.reads("feed", "cache") + b.reads("balance", "cache"); hits != 2 {
		t.Fatalf("B served %v reads from its cache, want 2", hits)
	}
	if s := b.cache.Stats(); s.Entries != 2 {
		t.Fatalf("B's cache %+v, want the page and the balance", s)
	}

	w := a.pay(tok, "ryw-1", 42, 2, -2500)
	if w.Code != http.StatusAccepted {
		t.Fatalf("pay on A: %d %s", w.Code, w.Body.String())
	}
	p := decodeBody[paymentResp](t, w)
	settle(t, a.pool, p.ID)
	if got := decodeBody[paymentResp](t, a.do(req{method: http.MethodGet, path: "/v1/payments/" + p.UID, token: tok})); got.Status != "succeeded" {
		t.Fatalf("A shows the payment %q, want succeeded", got.Status)
	}
	// B's cache still holds the documents from before: no event reached it.
	if s := b.cache.Stats(); s.Entries != 2 {
		t.Fatalf("B's cache %+v changed without an event", s)
	}

	primaryBefore := b.reads("feed", "primary") + b.reads("balance", "primary")
	feed := decodeBody[feedResp](t, b.conditional("/v1/users/42/feed", tok, ""))
	if !feed.has(p.ID) || feed.Balance != 7500 {
		t.Errorf("B's feed after the payment succeeded on A: %+v; want payment %d and balance 7500", feed, p.ID)
	}
	bal := decodeBody[balanceResp](t, b.conditional("/v1/users/42/balance", tok, ""))
	if bal != (balanceResp{UserID: 42, Balance: 7500, Held: 0, Available: 7500}) {
		t.Errorf("B's balance after the payment succeeded on A: %+v, want 7500 settled, nothing held", bal)
	}
	if hits := b.reads("feed", "cache") + b.reads("balance", "cache"); hits != 2 {
		t.Errorf("B served %v reads from its cache, want still 2: the old documents must not be served", hits)
	}
	if n := b.reads("feed", "primary") + b.reads("balance", "primary") - primaryBefore; n != 2 {
		t.Errorf("B read %v documents from the primary after the payment, want 2", n)
	}
	// An old ETag is no match on B either; the new page is now cached.
	if w := b.conditional("/v1/users/42/feed", tok, feed1.Header().Get("ETag")); w.Code != http.StatusOK || !decodeBody[feedResp](t, w).has(p.ID) {
		t.Errorf("B answered %d %s to the ETag from before the payment, want 200 with the payment", w.Code, w.Body.String())
	}
}

// TestCacheInvalidation: an event of payments.events evicts its user's
// documents from the cache (and only that user's); a write the gateway
// never hears of still makes the cached documents unservable.
func TestCacheInvalidation(t *testing.T) {
	t.Parallel()
	g := newReadGateway(t, newEnv(t).pool, nil)
	g.wallet(42, 10_000)
	g.wallet(43, 10_000)
	g.entry(42, 1000, 1, 10_000, time.Unix(1700000000, 0))
	t42, t43 := token(t, 42, false), token(t, 43, false)
	for _, path := range []string{"/v1/users/42/feed", "/v1/users/42/feed?limit=1", "/v1/users/42/balance"} {
		wantFull(t, path, g.conditional(path, t42, ""))
	}
	wantFull(t, "43 balance", g.conditional("/v1/users/43/balance", t43, ""))
	if s := g.cache.Stats(); s.Users != 2 || s.Entries != 4 {
		t.Fatalf("cache %+v, want 3 documents of user 42 and 1 of user 43", s)
	}

	g.hub.Publish(ledger.Event{UserID: 42, UserSeq: 9, PaymentID: 5, Status: payment.StatusAccepted})
	if s := g.cache.Stats(); s.Users != 1 || s.Entries != 1 {
		t.Fatalf("cache %+v after an event of user 42, want user 43's balance alone", s)
	}
	wantFull(t, "43 balance", g.conditional("/v1/users/43/balance", t43, ""))
	if hits := g.reads("balance", "cache"); hits != 1 {
		t.Errorf("user 43's balance served %v times from the cache, want 1", hits)
	}

	// A change the gateway hears nothing of: the wallet's event_seq moved,
	// so the cached document is not served.
	wantFull(t, "42 balance", g.conditional("/v1/users/42/balance", t42, ""))
	g.exec(`UPDATE wallets SET balance = balance + 1, event_seq = event_seq + 1 WHERE user_id = 42`)
	bal := decodeBody[balanceResp](t, g.conditional("/v1/users/42/balance", t42, ""))
	if bal.Balance != 10_001 {
		t.Errorf("balance %d after an unannounced change, want 10001", bal.Balance)
	}
}

func TestBalance(t *testing.T) {
	t.Parallel()
	g := newReadGateway(t, newEnv(t).pool, nil)
	g.wallet(42, 10_000)
	g.wallet(43, 10_000)
	tok, admin := token(t, 42, false), token(t, 1, true)

	w := g.conditional("/v1/users/42/balance", tok, "")
	tag := wantFull(t, "balance", w)
	if got := decodeBody[balanceResp](t, w); got != (balanceResp{UserID: 42, Balance: 10_000, Available: 10_000}) {
		t.Errorf("balance %+v", got)
	}
	wantNotModified(t, "same ETag", g.conditional("/v1/users/42/balance", tok, tag), tag)
	if g.reads("balance", "not_modified") != 1 {
		t.Error("304 not counted as not_modified")
	}

	// A debit's hold: held and available change, and so does the ETag.
	if w := g.pay(tok, "bal-1", 42, 2, -3000); w.Code != http.StatusAccepted {
		t.Fatalf("pay: %d %s", w.Code, w.Body.String())
	}
	w = g.conditional("/v1/users/42/balance", tok, tag)
	if newTag := wantFull(t, "after a payment", w); newTag == tag {
		t.Error("ETag unchanged after a hold")
	}
	if got := decodeBody[balanceResp](t, w); got != (balanceResp{UserID: 42, Balance: 10_000, Held: 3000, Available: 7000}) {
		t.Errorf("balance after a hold %+v", got)
	}

	// Another user's balance: 403, whatever If-None-Match says.
	wantProblem(t, g.conditional("/v1/users/43/balance", tok, "*"), http.StatusForbidden, "forbidden")
	// The admin may read it; an unknown user is 404; a bad id 400.
	wantFull(t, "admin", g.conditional("/v1/users/43/balance", admin, ""))
	wantProblem(t, g.conditional("/v1/users/44/balance", admin, ""), http.StatusNotFound, "not-found")
	for _, bad := range []string{"abc", "0", "-1", "99999999999999999999"} {
		wantProblem(t, g.conditional("/v1/users/"+bad+"/balance", admin, ""), http.StatusBadRequest, "invalid-request")
	}
	if w := g.conditional("/v1/users/42/balance", "", ""); w.Code != http.StatusUnauthorized {
		t.Errorf("no token: %d", w.Code)
	}
	if strings.Contains(g.conditional("/v1/users/43/balance", tok, "").Body.String(), "10000") {
		t.Error("another user's balance leaked")
	}
}
