package httpapi_test

import (
	"net/http"
	"testing"
)

// TestIdempotencyKeyKeptPast30Days: keys are never pruned (a unique index on
// payments, rows never deleted), so a retry after 31 days, well past the 30
// days promised and Stripe's classic 24 hours, still answers the first
// payment and a different body with that key is still refused.
func TestIdempotencyKeyKeptPast30Days(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.wallet(5, 10000)
	tok := token(t, 5, false)

	first := e.pay(tok, "old-key", 5, 1, -1000)
	if first.Code != http.StatusAccepted {
		t.Fatalf("first: %d %s", first.Code, first.Body.String())
	}
	orig := decodeBody[paymentResp](t, first)
	e.exec(`UPDATE payments SET created_at = now() - interval '31 days', updated_at = now() - interval '31 days',
		status = 'succeeded', hold = 0 WHERE id = $1`, orig.ID)
	e.exec(`UPDATE wallets SET held = 0, balance = balance - 1000 WHERE user_id = 5`)

	again := e.pay(tok, "old-key", 5, 1, -1000)
	got := decodeBody[paymentResp](t, again)
	if again.Code != http.StatusOK || got.ID != orig.ID || got.Status != "succeeded" ||
		again.Header().Get("Idempotent-Replayed") != "true" {
		t.Errorf("retry after 31 days: %d %+v, want 200 and payment %d succeeded, replayed", again.Code, got, orig.ID)
	}
	wantProblem(t, e.pay(tok, "old-key", 5, 1, -999), http.StatusUnprocessableEntity, "idempotency-key-reuse")
	if n := e.count(`SELECT count(*) FROM payments WHERE user_id = 5`); n != 1 {
		t.Errorf("payments = %d, want 1", n)
	}
	if n := e.count(`SELECT count(*) FROM outbox`); n != 2 {
		t.Errorf("outbox records = %d, want 2 (the first payment's request and event; the retry queued nothing)", n)
	}
}
