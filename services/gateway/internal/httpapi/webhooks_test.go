package httpapi_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/finsvc/finance/pkg/auth"
	"github.com/finsvc/finance/pkg/obs"
	"github.com/finsvc/finance/pkg/pgtest"
	"github.com/finsvc/finance/pkg/postgres"
	"github.com/finsvc/finance/pkg/webhook"
	"github.com/finsvc/finance/services/gateway/internal/httpapi"
	"github.com/finsvc/finance/services/gateway/internal/store"
)

// newWebhookEnv is a gateway with the webhook routes, whose policy is the
// production one (https only, no private address) unless dev is set.
func newWebhookEnv(t *testing.T, dev bool) *env {
	t.Helper()
	pool, err := postgres.Connect(context.Background(), pgtest.NewDB(t), 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	policy := webhook.Policy{}
	if dev {
		policy = webhook.Policy{AllowHTTP: true, Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
	}
	h := checked(t, httpapi.New(httpapi.Config{
		Logger:        slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
		Store:         store.New(pool),
		Verifier:      auth.NewVerifier(testSecret),
		Registry:      obs.NewRegistry(),
		Webhooks:      webhook.NewStore(pool),
		WebhookPolicy: policy,
	}))
	return &env{t: t, pool: pool, h: h}
}

func decodeEndpoint(t *testing.T, body []byte) webhook.Endpoint {
	t.Helper()
	var e webhook.Endpoint
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	return e
}

// Bad input is a 422 problem and stores nothing.
func TestWebhookEndpointRefusals(t *testing.T) {
	t.Parallel()
	e := newWebhookEnv(t, false)
	tok := token(t, 7, false)
	tests := []struct{ name, body, detail string }{
		{"private url", `{"url":"https://10.0.0.1/hook"}`, "private"},
		{"loopback url", `{"url":"https://127.0.0.1/hook"}`, "private"},
		{"link-local url", `{"url":"https://169.254.169.254/"}`, "private"},
		{"http outside dev", `{"url":"http://93.184.215.14/hook"}`, "https"},
		{"not a url", `{"url":"::nope"}`, "url"},
		{"no url", `{"event_types":["payment.failed"]}`, "url is required"},
		{"unknown type", `{"url":"https://93.184.215.14/hook","event_types":["payment.exploded"]}`, "unknown event type"},
		{"oversized description", `{"url":"https://93.184.215.14/hook","description":"` + strings.Repeat("d", 600) + `"}`, "description"},
	}
	for _, tt := range tests {
		w := e.do(req{method: http.MethodPost, path: "/v1/webhooks/endpoints", body: tt.body, token: tok})
		if w.Code != http.StatusUnprocessableEntity || w.Header().Get("Content-Type") != "application/problem+json" ||
			!strings.Contains(w.Body.String(), "invalid-webhook-endpoint") || !strings.Contains(w.Body.String(), tt.detail) {
			t.Errorf("%s: %d %s %s", tt.name, w.Code, w.Header().Get("Content-Type"), w.Body)
		}
	}
	if n := e.count(`SELECT count(*) FROM webhook_endpoints`); n != 0 {
		t.Errorf("%d endpoints stored", n)
	}
}

// A user's endpoint is its own: the user filter is forced to itself,
// another user sees nothing of it, an admin sees all.
func TestWebhookEndpointLifecycle(t *testing.T) {
	t.Parallel()
	e := newWebhookEnv(t, true)
	alice, bob, admin := token(t, 7, false), token(t, 8, false), token(t, 1, true)

	w := e.do(req{method: http.MethodPost, path: "/v1/webhooks/endpoints", token: alice,
		body: `{"url":"http://127.0.0.1:9/hook","event_types":["payment.succeeded","payment.failed"],"description":"shop"}`})
	if w.Code != http.StatusCreated {
		t.Fatalf("create: %d %s", w.Code, w.Body)
	}
	ep := decodeEndpoint(t, w.Body.Bytes())
	if ep.UserID == nil || *ep.UserID != 7 || !strings.HasPrefix(ep.Secret, "whsec_") || !ep.Enabled ||
		w.Header().Get("Location") != "/v1/webhooks/endpoints/"+ep.ID.String() {
		t.Fatalf("created %+v", ep)
	}
	path := "/v1/webhooks/endpoints/" + ep.ID.String()

	if w := e.do(req{method: http.MethodPost, path: "/v1/webhooks/endpoints", token: alice,
		body: `{"url":"http://127.0.0.1:9/x","user_id":8}`}); w.Code != http.StatusForbidden {
		t.Errorf("subscribe to another user: %d", w.Code)
	}
	if w := e.do(req{method: http.MethodGet, path: path, token: bob}); w.Code != http.StatusNotFound {
		t.Errorf("bob reads alice's endpoint: %d", w.Code)
	}
	if w := e.do(req{method: http.MethodGet, path: path, token: alice}); w.Code != http.StatusOK || strings.Contains(w.Body.String(), "whsec_") {
		t.Errorf("get: %d %s (the secret must not show)", w.Code, w.Body)
	}
	if w := e.do(req{method: http.MethodGet, path: "/v1/webhooks/endpoints", token: bob}); !strings.Contains(w.Body.String(), `"endpoints":[]`) {
		t.Errorf("bob's list: %s", w.Body)
	}
	if w := e.do(req{method: http.MethodGet, path: "/v1/webhooks/endpoints", token: admin}); !strings.Contains(w.Body.String(), ep.ID.String()) {
		t.Errorf("admin's list: %s", w.Body)
	}

	w = e.do(req{method: http.MethodPatch, path: path, token: alice, body: `{"enabled":false,"description":"paused"}`})
	if got := decodeEndpoint(t, w.Body.Bytes()); w.Code != http.StatusOK || got.Enabled || got.Description != "paused" || len(got.EventTypes) != 2 {
		t.Errorf("patch: %d %s", w.Code, w.Body)
	}
	if w := e.do(req{method: http.MethodPatch, path: path, token: alice, body: `{"url":"https://192.168.0.1/"}`}); w.Code != http.StatusUnprocessableEntity {
		t.Errorf("patch to a private url: %d", w.Code)
	}

	w = e.do(req{method: http.MethodPost, path: path + "/rotate-secret?overlap=1h", token: alice})
	rot := decodeEndpoint(t, w.Body.Bytes())
	if w.Code != http.StatusOK || rot.Secret == ep.Secret || !strings.HasPrefix(rot.Secret, "whsec_") ||
		rot.PreviousSecretExpiresAt == nil || time.Until(*rot.PreviousSecretExpiresAt) > time.Hour {
		t.Errorf("rotate: %d %s", w.Code, w.Body)
	}

	// The delivery log, resend and recover.
	e.exec(`INSERT INTO webhook_messages (endpoint_id, user_id, event_id, event_type, payment_id, payload, state, attempts)
		VALUES ($1, 7, '5:failed', 'payment.failed', 5, '{}', 'failed', 8)`, ep.ID)
	e.exec(`INSERT INTO webhook_attempts (message_id, endpoint_id, user_id, event_id, attempt, status_code, latency_ms, response)
		SELECT id, endpoint_id, user_id, event_id, 8, 503, 40, 'busy' FROM webhook_messages`)
	if w := e.do(req{method: http.MethodGet, path: path + "/attempts?event_id=5:failed", token: alice}); w.Code != http.StatusOK ||
		!strings.Contains(w.Body.String(), `"status_code":503`) || !strings.Contains(w.Body.String(), `"response":"busy"`) {
		t.Errorf("attempts: %d %s", w.Code, w.Body)
	}
	if w := e.do(req{method: http.MethodPost, path: path + "/messages/5:failed/resend", token: alice}); w.Code != http.StatusAccepted {
		t.Errorf("resend: %d %s", w.Code, w.Body)
	}
	e.exec(`UPDATE webhook_messages SET state = 'failed'`)
	since := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	if w := e.do(req{method: http.MethodPost, path: path + "/recover?since=" + since, token: alice}); w.Code != http.StatusAccepted ||
		!strings.Contains(w.Body.String(), `"requeued":1`) {
		t.Errorf("recover: %d %s", w.Code, w.Body)
	}
	if n := e.count(`SELECT count(*) FROM webhook_messages WHERE state = 'pending' AND attempts = 0`); n != 1 {
		t.Errorf("%d messages requeued", n)
	}

	if w := e.do(req{method: http.MethodDelete, path: path, token: bob}); w.Code != http.StatusNotFound {
		t.Errorf("bob deletes: %d", w.Code)
	}
	if w := e.do(req{method: http.MethodDelete, path: path, token: alice}); w.Code != http.StatusNoContent {
		t.Errorf("delete: %d", w.Code)
	}
	if n := e.count(`SELECT count(*) FROM webhook_endpoints`); n != 0 {
		t.Errorf("%d endpoints left", n)
	}
}
