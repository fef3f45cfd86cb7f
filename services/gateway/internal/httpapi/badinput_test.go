package httpapi_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/finsvc/finance/pkg/auth"
)

// TestBadPaymentInput checks every refused request: the right problem, and
// nothing written.
func TestBadPaymentInput(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.wallet(5, 1000)
	tok := token(t, 5, false)
	admin := token(t, 1, true)
	key := map[string]string{"Idempotency-Key": "k1"}
	with := func(extra map[string]string) map[string]string {
		h := map[string]string{"Idempotency-Key": "k1"}
		for k, v := range extra {
			h[k] = v
		}
		return h
	}
	big := `{"user_id":5,"merchant_id":1,"amount":-1` + strings.Repeat(" ", 70<<10) + `}`

	for _, tc := range []struct {
		name   string
		path   string // default /v1/payments
		token  string // default tok
		header map[string]string
		body   string
		status int
		typ    string
		detail string // a substring the detail must hold
	}{
		{name: "malformed JSON", body: `{"user_id":5,`, status: 400, typ: "invalid-request", detail: "malformed"},
		{name: "not JSON", body: `user_id=5`, status: 400, typ: "invalid-request", detail: "malformed JSON"},
		{name: "empty body", header: with(map[string]string{"Content-Type": "application/json"}), status: 400, typ: "invalid-request", detail: "empty"},
		{name: "JSON array", body: `[5,1,-1]`, status: 400, typ: "invalid-request", detail: "JSON object"},
		{name: "null", body: `null`, status: 400, typ: "invalid-request", detail: "missing"},
		{name: "two objects", body: paymentBody(5, 1, -1) + paymentBody(5, 1, -1), status: 400, typ: "invalid-request", detail: "exactly one"},
		{name: "unknown field", body: `{"user_id":5,"merchant_id":1,"amount":-1,"currency":"EUR"}`, status: 400, typ: "invalid-request", detail: `"currency"`},
		{name: "missing amount", body: `{"user_id":5,"merchant_id":1}`, status: 400, typ: "invalid-request", detail: "amount"},
		{name: "missing all", body: `{}`, status: 400, typ: "invalid-request", detail: "user_id, merchant_id, amount"},
		{name: "amount zero", body: paymentBody(5, 1, 0), status: 400, typ: "invalid-request", detail: "must not be 0"},
		{name: "amount fraction", body: `{"user_id":5,"merchant_id":1,"amount":10.5}`, status: 400, typ: "invalid-request", detail: "amount must be an integer"},
		{name: "amount string", body: `{"user_id":5,"merchant_id":1,"amount":"10"}`, status: 400, typ: "invalid-request", detail: "amount must be an integer"},
		{name: "amount exponent", body: `{"user_id":5,"merchant_id":1,"amount":1e3}`, status: 400, typ: "invalid-request", detail: "amount"},
		{name: "amount beyond int64", body: `{"user_id":5,"merchant_id":1,"amount":-99999999999999999999}`, status: 400, typ: "invalid-request", detail: "amount"},
		{name: "amount above max", body: paymentBody(5, 1, 1_000_000_000_001), status: 400, typ: "invalid-request", detail: "±"},
		{name: "amount below min", body: paymentBody(5, 1, -1_000_000_000_001), status: 400, typ: "invalid-request", detail: "±"},
		{name: "user_id zero", token: admin, body: paymentBody(0, 1, -1), status: 400, typ: "invalid-request", detail: "user_id"},
		{name: "user_id negative", token: admin, body: paymentBody(-5, 1, -1), status: 400, typ: "invalid-request", detail: "user_id"},
		{name: "merchant_id zero", body: paymentBody(5, 0, -1), status: 400, typ: "invalid-request", detail: "merchant_id"},
		{name: "no Idempotency-Key", header: map[string]string{}, body: paymentBody(5, 1, -1), status: 400, typ: "invalid-request", detail: "Idempotency-Key"},
		{name: "blank Idempotency-Key", header: map[string]string{"Idempotency-Key": "  "}, body: paymentBody(5, 1, -1), status: 400, typ: "invalid-request", detail: "Idempotency-Key"},
		{name: "Idempotency-Key too long", header: map[string]string{"Idempotency-Key": strings.Repeat("k", 256)}, body: paymentBody(5, 1, -1), status: 400, typ: "invalid-request", detail: "Idempotency-Key"},
		{name: "Idempotency-Key not ASCII", header: map[string]string{"Idempotency-Key": "clé"}, body: paymentBody(5, 1, -1), status: 400, typ: "invalid-request", detail: "Idempotency-Key"},
		{name: "legacy bad Idempotency-Key", path: "/payment", header: map[string]string{"Idempotency-Key": strings.Repeat("k", 256)}, body: paymentBody(5, 1, -1), status: 400, typ: "invalid-request", detail: "Idempotency-Key"},
		{name: "unknown user", token: admin, body: paymentBody(999, 1, -1), status: 422, typ: "unknown-user", detail: "user_id"},
		{name: "unknown merchant", body: paymentBody(5, 777, -1), status: 422, typ: "unknown-merchant", detail: "merchant_id"},
		{name: "insufficient funds", body: paymentBody(5, 1, -1001), status: 422, typ: "insufficient-funds", detail: "available balance"},
		{name: "legacy insufficient funds", path: "/payment", header: map[string]string{}, body: paymentBody(5, 1, -1001), status: 422, typ: "insufficient-funds", detail: "available balance"},
		{name: "body over 64 KiB", body: big, status: 413, typ: "payload-too-large", detail: "65536"},
		{name: "text/plain", header: with(map[string]string{"Content-Type": "text/plain"}), body: paymentBody(5, 1, -1), status: 415, typ: "unsupported-media-type", detail: "application/json"},
		{name: "no content type", header: with(map[string]string{"Content-Type": ""}), body: paymentBody(5, 1, -1), status: 415, typ: "unsupported-media-type", detail: "application/json"},
		{name: "other charset", header: with(map[string]string{"Content-Type": "application/json; charset=latin1"}), body: paymentBody(5, 1, -1), status: 415, typ: "unsupported-media-type", detail: "charset"},
		{name: "other user", body: paymentBody(6, 1, -1), status: 403, typ: "forbidden", detail: "user 5"},
		{name: "legacy other user", path: "/payment", body: paymentBody(6, 1, -1), status: 403, typ: "forbidden", detail: "user 5"},
		{name: "no token", token: "-", body: paymentBody(5, 1, -1), status: 401, typ: "unauthorized", detail: "Authorization"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := req{method: http.MethodPost, path: tc.path, token: tc.token, header: tc.header, body: tc.body}
			if r.path == "" {
				r.path = "/v1/payments"
			}
			switch r.token {
			case "":
				r.token = tok
			case "-":
				r.token = ""
			}
			if r.header == nil {
				r.header = key
			}
			w := e.do(r)
			p := wantProblem(t, w, tc.status, tc.typ)
			if !strings.Contains(p.Detail, tc.detail) {
				t.Errorf("detail %q does not mention %q", p.Detail, tc.detail)
			}
		})
	}
	t.Cleanup(func() {
		for _, table := range []string{"payments", "outbox", "payment_transitions"} {
			if n := e.count(`SELECT count(*) FROM ` + table); n != 0 {
				t.Errorf("%s rows = %d after refused requests, want 0", table, n)
			}
		}
		if n := e.count(`SELECT held + event_seq FROM wallets WHERE user_id = 5`); n != 0 {
			t.Errorf("wallet held + event_seq = %d after refused requests, want 0", n)
		}
	})
}

func TestBodyLimitWithoutContentLength(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.wallet(5, 1000)
	body := `{"user_id":5,"merchant_id":1,"amount":-1` + strings.Repeat(" ", 70<<10) + `}`
	r := httptest.NewRequest(http.MethodPost, "/v1/payments", strings.NewReader(body))
	r.ContentLength = -1 // chunked: the limit must hold while reading
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Idempotency-Key", "k")
	r.Header.Set("Authorization", "Bearer "+token(t, 5, false))
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, r)
	wantProblem(t, w, http.StatusRequestEntityTooLarge, "payload-too-large")
	if n := e.count(`SELECT count(*) FROM payments`); n != 0 {
		t.Errorf("payments = %d, want 0", n)
	}
}

func TestAuthentication(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.wallet(5, 1000)
	e.wallet(6, 1000)
	expired, err := auth.Mint(testSecret, 5, false, time.Minute, time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := auth.Mint([]byte("another-secret-0123456789abcdefghijkl"), 5, true, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name          string
		authorization string
		status        int
		typ           string
		challenge     string
	}{
		{"no header", "", 401, "unauthorized", `Bearer realm="finance"`},
		{"not bearer", "Basic dXNlcjpwYXNz", 401, "unauthorized", `Bearer realm="finance", error="invalid_token"`},
		{"garbage token", "Bearer not-a-jwt", 401, "unauthorized", `Bearer realm="finance", error="invalid_token"`},
		{"expired", "Bearer " + expired, 401, "unauthorized", `Bearer realm="finance", error="invalid_token"`},
		{"other secret", "Bearer " + foreign, 401, "unauthorized", `Bearer realm="finance", error="invalid_token"`},
		{"other user", "Bearer " + token(t, 6, false), 403, "forbidden", ""},
		{"self", "Bearer " + token(t, 5, false), 200, "", ""},
		{"admin", "Bearer " + token(t, 6, true), 200, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for _, path := range []string{"/v1/users/5/feed", "/payment_feed?user_id=5"} {
				w := e.do(req{method: http.MethodGet, path: path, header: map[string]string{"Authorization": tc.authorization}})
				if got := w.Header().Get("WWW-Authenticate"); got != tc.challenge {
					t.Errorf("%s: WWW-Authenticate = %q, want %q", path, got, tc.challenge)
				}
				if tc.typ == "" {
					if w.Code != tc.status {
						t.Errorf("%s: status %d, want %d", path, w.Code, tc.status)
					}
					continue
				}
				wantProblem(t, w, tc.status, tc.typ)
			}
		})
	}

	// An admin may pay for any user; the payment is the user's.
	w := e.pay(token(t, 6, true), "admin-pays", 5, 1, -10)
	if p := decodeBody[paymentResp](t, w); w.Code != http.StatusAccepted || p.UserID != 5 {
		t.Errorf("admin payment for user 5: %d %s", w.Code, w.Body.String())
	}
}

func TestRoutingProblems(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tok := token(t, 5, false)

	wantProblem(t, e.do(req{method: http.MethodGet, path: "/v1/nope", token: tok}), 404, "not-found")
	wantProblem(t, e.do(req{method: http.MethodGet, path: "/v1/payments/", token: tok}), 404, "not-found")
	w := e.do(req{method: http.MethodDelete, path: "/v1/payments", token: tok})
	wantProblem(t, w, 405, "method-not-allowed")
	if got := w.Header().Get("Allow"); got != "POST" {
		t.Errorf("Allow = %q, want POST", got)
	}
	w = e.do(req{method: http.MethodGet, path: "/v1/payments", token: tok})
	wantProblem(t, w, 405, "method-not-allowed")
}

func TestOpsEndpoints(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.wallet(5, 1000)
	if w := e.pay(token(t, 5, false), "k", 5, 1, -10); w.Code != http.StatusAccepted {
		t.Fatalf("pay: %d", w.Code)
	}
	e.pay(token(t, 5, false), "k", 5, 1, -10) // a replay, not counted as accepted
	e.do(req{method: http.MethodPost, path: "/payment", token: token(t, 5, false), body: paymentBody(5, 1, -10)})

	for _, path := range []string{"/healthz", "/readyz"} {
		if w := e.do(req{method: http.MethodGet, path: path}); w.Code != http.StatusOK {
			t.Errorf("%s without auth: %d %s", path, w.Code, w.Body.String())
		}
	}
	w := e.do(req{method: http.MethodGet, path: "/metrics"})
	if w.Code != http.StatusOK {
		t.Fatalf("/metrics: %d", w.Code)
	}
	for _, line := range []string{
		`gateway_payments_accepted_total{api="v1"} 1`,
		`gateway_payments_accepted_total{api="legacy"} 1`,
		`gateway_payments_replayed_total{api="v1"} 1`,
		`gateway_http_requests_total{method="POST",route="/v1/payments",status="202"} 2`,
		`gateway_http_request_duration_seconds_count{method="POST",route="/payment",status="202"} 1`,
		`go_goroutines`,
	} {
		if !strings.Contains(w.Body.String(), line) {
			t.Errorf("/metrics lacks %q", line)
		}
	}
}

func TestRequestTimeout(t *testing.T) {
	t.Parallel()
	e := newEnvTimeout(t, time.Nanosecond) // expired before the database is asked
	e.wallet(5, 1000)
	w := e.pay(token(t, 5, false), "k", 5, 1, -10)
	p := wantProblem(t, w, http.StatusServiceUnavailable, "timeout")
	if !strings.Contains(p.Detail, "same Idempotency-Key") {
		t.Errorf("detail %q does not say how to retry", p.Detail)
	}
	if n := e.count(`SELECT count(*) FROM payments`); n != 0 {
		t.Errorf("payments = %d, want 0", n)
	}
}
