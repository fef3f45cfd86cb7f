package httpapi_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"github.com/finsvc/finance/pkg/auth"
	"github.com/finsvc/finance/pkg/obs"
	"github.com/finsvc/finance/pkg/pgtest"
	"github.com/finsvc/finance/pkg/postgres"
	"github.com/finsvc/finance/pkg/webhook"
	"github.com/finsvc/finance/services/gateway/internal/httpapi"
	"github.com/finsvc/finance/services/gateway/internal/store"
)

type auditRow struct {
	Actor, Action, Target string
	Status                int
}

// Admin actions land in admin_audit with actor, action and target, refused
// attempts included, and nothing else does. The gateway connects as its
// own role, finance_gateway (migration 00012), as production does, so the
// webhook routes and the audit also prove their grants are enough.
func TestAdminActionsAudited(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL := pgtest.NewDB(t)
	owner, err := postgres.Connect(ctx, dbURL, 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(owner.Close)
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User("finance_gateway")
	pool, err := postgres.Connect(ctx, u.String(), 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	h := checked(t, httpapi.New(httpapi.Config{
		Logger:        slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
		Store:         store.New(pool),
		Verifier:      auth.NewVerifier(testSecret),
		Registry:      obs.NewRegistry(),
		Webhooks:      webhook.NewStore(pool),
		WebhookPolicy: webhook.Policy{AllowHTTP: true, Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}},
	}))
	e := &env{t: t, pool: owner, h: h}
	alice, admin := token(t, 7, false), token(t, 1, true)

	w := e.do(req{method: http.MethodPost, path: "/v1/webhooks/endpoints", token: alice, body: `{"url":"http://127.0.0.1:9/hook"}`})
	if w.Code != http.StatusCreated {
		t.Fatalf("create: %d %s", w.Code, w.Body)
	}
	id := decodeEndpoint(t, w.Body.Bytes()).ID.String()
	path := "/v1/webhooks/endpoints/" + id
	steps := []struct {
		method, path, token string
		status              int
	}{
		{http.MethodGet, path, alice, http.StatusOK},                            // a read: not audited
		{http.MethodGet, "/v1/webhooks/endpoints", admin, http.StatusOK},        // a read: not audited
		{http.MethodPost, path + "/rotate-secret", alice, http.StatusOK},        // audited
		{http.MethodGet, "/v1/admin/dlq", alice, http.StatusForbidden},          // refused, audited
		{http.MethodGet, "/v1/admin/dlq", admin, http.StatusServiceUnavailable}, // no Kafka here; audited
		{http.MethodDelete, path, admin, http.StatusNoContent},                  // audited
	}
	for _, s := range steps {
		if w := e.do(req{method: s.method, path: s.path, token: s.token}); w.Code != s.status {
			t.Fatalf("%s %s: %d %s", s.method, s.path, w.Code, w.Body)
		}
	}
	if w := e.do(req{method: http.MethodGet, path: "/v1/users/7/balance", token: alice}); w.Code != http.StatusNotFound {
		t.Fatalf("balance: %d %s", w.Code, w.Body) // a business route: not audited
	}

	rows, _ := owner.Query(ctx, `SELECT actor, action, target, status FROM admin_audit ORDER BY id`)
	got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[auditRow])
	if err != nil {
		t.Fatal(err)
	}
	want := []auditRow{
		{"7", "POST /v1/webhooks/endpoints", path, http.StatusCreated},
		{"7", "POST /v1/webhooks/endpoints/:id/rotate-secret", "id=" + id, http.StatusOK},
		{"7", "GET /v1/admin/dlq", "", http.StatusForbidden},
		{"admin:1", "GET /v1/admin/dlq", "", http.StatusServiceUnavailable},
		{"admin:1", "DELETE /v1/webhooks/endpoints/:id", "id=" + id, http.StatusNoContent},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("admin_audit (-want +got):\n%s", diff)
	}

	// The gateway's role appends to the audit; it cannot rewrite it.
	if _, err := pool.Exec(ctx, `DELETE FROM admin_audit`); err == nil {
		t.Error("finance_gateway deleted admin_audit rows")
	}
}
