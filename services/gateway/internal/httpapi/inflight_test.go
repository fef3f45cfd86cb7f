package httpapi_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/finsvc/finance/pkg/testkit"
	"github.com/finsvc/finance/services/gateway/internal/httpapi"
	"github.com/finsvc/finance/services/gateway/internal/inflight"
)

// TestInFlightWindowPerAddress: an address with its window of requests in
// progress makes the next one wait, and answers 429 too-many-in-progress
// when the wait passes; another address is served meanwhile; once the
// first request is served the window opens to the next.
func TestInFlightWindowPerAddress(t *testing.T) {
	t.Parallel()
	e, _ := newLimitedEnv(t, httpapi.Limits{InFlight: inflight.Policy{Start: 1, Max: 2, Wait: 300 * time.Millisecond}, MaxKeys: 10})
	ctx := context.Background()
	// Balances read wallets: with the table locked, a balance read stays
	// in progress until the lock is let go.
	lock, err := e.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = lock.Rollback(ctx) }()
	if _, err := lock.Exec(ctx, `LOCK TABLE wallets IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	first := make(chan *httptest.ResponseRecorder, 1)
	go func() { first <- e.from("203.0.113.1:1", "/v1/users/1/balance", token(t, 1, false)) }()
	testkit.Eventually(t, "the first read waits on the lock", func() bool {
		var n int
		_ = e.pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'`).Scan(&n)
		return n == 1
	})

	start := time.Now()
	w := e.from("203.0.113.1:2", "/v1/users/2/balance", token(t, 2, false))
	if waited := time.Since(start); waited < 300*time.Millisecond {
		t.Errorf("second request of the address answered after %s, before its wait of 300ms", waited)
	}
	wantProblem(t, w, http.StatusTooManyRequests, "too-many-in-progress")
	wantHeaders(t, w, `"inflight";q=1;qu="concurrent-requests"`, `"inflight";r=0;t=1`)
	if got := w.Header().Get("Retry-After"); got != "1" {
		t.Errorf("Retry-After = %q, want 1", got)
	}
	// Another address is not held up (a payment lookup reads no wallet).
	if w := e.from("203.0.113.2:1", "/v1/payments/99", token(t, 1, false)); w.Code != http.StatusNotFound {
		t.Errorf("another address: %d, want 404: %s", w.Code, w.Body)
	}

	if err := lock.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if w := <-first; w.Code != http.StatusOK {
		t.Fatalf("first read = %d, want 200: %s", w.Code, w.Body)
	}
	// Idle again, the address starts at one slot and is served.
	if w := e.from("203.0.113.1:3", "/v1/users/2/balance", token(t, 2, false)); w.Code != http.StatusOK {
		t.Fatalf("after the first was served: %d, want 200: %s", w.Code, w.Body)
	}
}

// TestInFlightLongPollAndStreamGiveBackTheirSlot: a long-poll and an
// event stream served by net/http (here a recorder, which cannot be
// parked) give back their slot once they begin to wait, so that an
// address's one slot still serves its next request while both wait.
func TestInFlightLongPollAndStreamGiveBackTheirSlot(t *testing.T) {
	t.Parallel()
	e := setupPush(t, pushOpts{limits: httpapi.Limits{InFlight: inflight.Policy{Start: 1, Max: 1, Wait: time.Minute}, MaxKeys: 10}})
	e.wallet(3456, 10_000)
	tok := token(t, 3456, false)
	p := e.payN(tok, 3456, 1, "slot-")[0]

	send := func(ctx context.Context, port, path string) *httptest.ResponseRecorder {
		r := httptest.NewRequestWithContext(ctx, http.MethodGet, path, nil)
		r.RemoteAddr = "203.0.113.9:" + port
		r.Header.Set("Authorization", "Bearer "+tok)
		w := httptest.NewRecorder()
		e.h.ServeHTTP(w, r)
		return w
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	// The long-poll ends by its wait (a client that leaves gets no answer
	// to check against the contract); the stream when the client leaves.
	go func() { send(context.Background(), "1", "/v1/payments/"+p.UID+"?wait=3s"); done <- struct{}{} }()
	testkit.Eventually(t, "the long-poll waits", func() bool { return e.gw.hub.Open() == 1 })
	go func() { send(ctx, "2", "/v1/users/3456/events"); done <- struct{}{} }()
	testkit.Eventually(t, "the stream waits", func() bool { return e.gw.hub.Open() == 2 })

	answered := make(chan int, 1)
	go func() { answered <- send(context.Background(), "3", "/v1/users/3456/balance").Code }()
	select {
	case code := <-answered:
		if code != http.StatusOK {
			t.Errorf("balance while a long-poll and a stream wait = %d, want 200", code)
		}
	case <-time.After(10 * time.Second):
		t.Error("the balance read is still waiting for a slot: a long-poll or stream kept it")
	}
	cancel()
	<-done
	<-done
}
