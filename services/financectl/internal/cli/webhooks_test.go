package cli_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/finsvc/finance/pkg/pgtest"
	"github.com/finsvc/finance/pkg/webhook"
)

// financectl webhooks does what the gateway's routes do: refuses a private
// URL (storing nothing), creates with a secret shown once, lists, rotates,
// shows the delivery log, resends and deletes.
func TestWebhooksCommand(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDB(t)
	env := map[string]string{"DATABASE_URL": url}

	if r := run(t, env, "webhooks", "create", "--url", "https://10.1.1.1/h"); r.code != 1 || !strings.Contains(r.stderr, "private") {
		t.Fatalf("private url: exit %d, stderr %q", r.code, r.stderr)
	}
	r := run(t, env, "webhooks", "create", "--url", "http://127.0.0.1:9/h", "--allow-http", "--allow-private", "127.0.0.0/8",
		"--types", "payment.failed", "--user", "42")
	if r.code != 0 {
		t.Fatalf("create: exit %d, stderr %q", r.code, r.stderr)
	}
	var ep webhook.Endpoint
	if err := json.Unmarshal([]byte(r.stdout), &ep); err != nil || !strings.HasPrefix(ep.Secret, "whsec_") || *ep.UserID != 42 {
		t.Fatalf("create: %v %s", err, r.stdout)
	}
	if r := run(t, env, "webhooks", "list", "--user", "42"); r.code != 0 || !strings.Contains(r.stdout, ep.ID.String()) || strings.Contains(r.stdout, "whsec_") {
		t.Errorf("list: exit %d %s", r.code, r.stdout)
	}
	r = run(t, env, "webhooks", "rotate-secret", "--id", ep.ID.String(), "--overlap", "1h")
	var rot webhook.Endpoint
	if err := json.Unmarshal([]byte(r.stdout), &rot); err != nil || rot.Secret == ep.Secret || rot.PreviousSecretExpiresAt == nil {
		t.Errorf("rotate: %v %s", err, r.stdout)
	}
	pool := openPool(t, url)
	if _, err := pool.Exec(t.Context(), `INSERT INTO webhook_messages (endpoint_id, user_id, event_id, event_type, payment_id, payload, state)
		VALUES ($1, 42, '9:failed', 'payment.failed', 9, '{}', 'failed')`, ep.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(t.Context(), `INSERT INTO webhook_attempts (message_id, endpoint_id, user_id, event_id, attempt, status_code, response)
		SELECT id, endpoint_id, user_id, event_id, 1, 500, 'boom' FROM webhook_messages`); err != nil {
		t.Fatal(err)
	}
	if r := run(t, env, "webhooks", "attempts", "--id", ep.ID.String(), "--event", "9:failed"); r.code != 0 || !strings.Contains(r.stdout, `"response": "boom"`) {
		t.Errorf("attempts: exit %d %s %s", r.code, r.stdout, r.stderr)
	}
	if r := run(t, env, "webhooks", "recover", "--id", ep.ID.String(), "--since", "2020-01-01T00:00:00Z"); r.code != 0 || !strings.Contains(r.stdout, `"requeued": 1`) {
		t.Errorf("recover: exit %d %s %s", r.code, r.stdout, r.stderr)
	}
	if r := run(t, env, "webhooks", "resend", "--id", ep.ID.String(), "--event", "9:failed"); r.code != 0 {
		t.Errorf("resend: exit %d %s", r.code, r.stderr)
	}
	if r := run(t, env, "webhooks", "delete", "--id", ep.ID.String()); r.code != 0 {
		t.Errorf("delete: exit %d %s", r.code, r.stderr)
	}
	if r := run(t, env, "webhooks", "get", "--id", ep.ID.String()); r.code != 1 || !strings.Contains(r.stderr, "no such") {
		t.Errorf("get after delete: exit %d %s", r.code, r.stderr)
	}
}
