package cli_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/finsvc/finance/pkg/payment"
	"github.com/finsvc/finance/pkg/pgtest"
	"github.com/finsvc/finance/pkg/webhook"
)

// auditRow is one admin_audit row as these tests check it.
type auditRow struct {
	Actor, Action, Target string
	Status                int
}

func auditRows(t *testing.T, pool *pgxpool.Pool) []auditRow {
	t.Helper()
	rows, _ := pool.Query(context.Background(), `SELECT actor, action, target, status FROM admin_audit ORDER BY id`)
	got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[auditRow])
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// asRole is dbURL with role as its user, as a deployment's URL for that
// role (no password: the test server trusts local connections).
func asRole(t *testing.T, dbURL, role string) string {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(role)
	return u.String()
}

// Every webhooks change is an admin_audit row with FINANCE_ACTOR, the
// command, the endpoint and 200, committed with the change; a failure once
// at the database (no such endpoint, an invalid URL) is recorded with the
// gateway's status for it; reads write nothing.
func TestWebhooksChangesAudited(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.NewDB(t)
	env := map[string]string{"DATABASE_URL": dbURL, "FINANCE_ACTOR": "alice@example.com"}

	r := run(t, env, "webhooks", "create", "--url", "http://127.0.0.1:9/h", "--allow-http", "--allow-private", "127.0.0.0/8")
	var ep webhook.Endpoint
	if err := json.Unmarshal([]byte(r.stdout), &ep); r.code != 0 || err != nil {
		t.Fatalf("create: exit %d, %v\n%s%s", r.code, err, r.stdout, r.stderr)
	}
	id, gone := ep.ID.String(), uuid.NewString()
	for _, tt := range []struct {
		args []string
		code int
	}{
		{[]string{"rotate-secret", "--id", id}, 0},
		{[]string{"list"}, 0},
		{[]string{"get", "--id", id}, 0},
		{[]string{"delete", "--id", gone}, 1},
		{[]string{"create", "--url", "https://10.1.1.1/h"}, 1},
		{[]string{"resend", "--id", id, "--event", "9:failed"}, 1},
		{[]string{"resend", "--id", id}, 2}, // refused before the database: not recorded
		{[]string{"delete", "--id", id}, 0},
	} {
		if r := run(t, env, append([]string{"webhooks"}, tt.args...)...); r.code != tt.code {
			t.Errorf("webhooks %v: exit %d, want %d\n%s", tt.args, r.code, tt.code, r.stderr)
		}
	}
	const actor = "alice@example.com"
	want := []auditRow{
		{actor, "financectl webhooks create", "id=" + id, 200},
		{actor, "financectl webhooks rotate-secret", "id=" + id, 200},
		{actor, "financectl webhooks delete", "id=" + gone, 404},
		{actor, "financectl webhooks create", "", 422},
		{actor, "financectl webhooks resend", "id=" + id + " event=9:failed", 404},
		{actor, "financectl webhooks delete", "id=" + id, 200},
	}
	if diff := cmp.Diff(want, auditRows(t, openPool(t, dbURL))); diff != "" {
		t.Errorf("admin_audit (-want +got):\n%s", diff)
	}
}

// No change without its row: where the role may change an endpoint but not
// write admin_audit, the change is rolled back and the command fails.
func TestChangeWithoutAuditRowIsRolledBack(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.NewDB(t)
	owner := openPool(t, dbURL)
	r := run(t, map[string]string{"DATABASE_URL": dbURL}, "webhooks", "create", "--url", "http://127.0.0.1:9/h",
		"--allow-http", "--allow-private", "127.0.0.0/8")
	var ep webhook.Endpoint
	if err := json.Unmarshal([]byte(r.stdout), &ep); r.code != 0 || err != nil {
		t.Fatalf("create: exit %d, %v\n%s", r.code, err, r.stderr)
	}
	// Grants are per database: this one's gateway role loses the insert.
	if _, err := owner.Exec(context.Background(), `REVOKE INSERT ON admin_audit FROM finance_gateway`); err != nil {
		t.Fatal(err)
	}
	r = run(t, map[string]string{"DATABASE_URL": asRole(t, dbURL, "finance_gateway")}, "webhooks", "rotate-secret", "--id", ep.ID.String())
	if r.code != 1 || !strings.Contains(r.stderr, "admin_audit") || !strings.Contains(r.stderr, "permission denied") {
		t.Errorf("rotate-secret without the audit grant: exit %d, want 1 naming admin_audit\n%s", r.code, r.stderr)
	}
	var secret string
	if err := owner.QueryRow(context.Background(), `SELECT secret FROM webhook_endpoints WHERE id = $1`, ep.ID).Scan(&secret); err != nil {
		t.Fatal(err)
	}
	if secret != ep.Secret {
		t.Error("the secret was rotated although its audit row could not be written")
	}
	if got := auditRows(t, owner); len(got) != 1 || got[0].Action != "financectl webhooks create" {
		t.Errorf("admin_audit = %+v, want the create alone", got)
	}
}

// financectl reconcile runs as finance_reconciler (migration 00015), as
// make run and the chart run it: its resolutions are written with that
// role's grants, each with its admin_audit row; a dry run writes none, and
// verify runs as the role too.
func TestReconcileAsReconcilerRoleAudited(t *testing.T) {
	t.Parallel()
	_, dbURL := demoDB(t)
	owner := openPool(t, dbURL)
	executed, declined := payment.NewUID(), payment.NewUID()
	for i, uid := range []uuid.UUID{executed, declined} {
		if _, err := owner.Exec(context.Background(), fmt.Sprintf(`
			INSERT INTO payments (id, uid, user_id, merchant_id, amount, status, idempotency_key, request_hash, hold, failure_reason, created_at, updated_at)
			VALUES (%d, '%s', 1001, 4593, -500, 'unknown', 'k-%[1]d', 'h', 500, 'timeout', now() - interval '6 minutes', now() - interval '5 minutes')`,
			300001+i, uid)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := owner.Exec(context.Background(), `UPDATE wallets SET held = held + 1000 WHERE user_id = 1001`); err != nil {
		t.Fatal(err)
	}
	proc := &fakeProcessor{
		executions: []map[string]any{execution(1, executed, 1001, -500, 5*time.Minute)},
		resources: map[string]map[string]any{payment.ProcessorKey(declined): {
			"id": "pay_2", "idempotency_key": payment.ProcessorKey(declined), "user_id": 1001, "amount": -500,
			"status": "declined", "reason": "card blocked",
		}},
	}
	sim := proc.serve(t)
	reconciler := map[string]string{"DATABASE_URL": asRole(t, dbURL, "finance_reconciler"), "FINANCE_ACTOR": "job:reconciler"}

	if r := run(t, reconciler, "reconcile", "--dry-run", "--processor-url", sim); r.code != 0 || !strings.Contains(r.stdout, "would resolve") {
		t.Fatalf("reconcile --dry-run as finance_reconciler: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if got := auditRows(t, owner); len(got) != 0 {
		t.Errorf("a dry run wrote admin_audit rows: %+v", got)
	}
	if r := run(t, reconciler, "reconcile", "--processor-url", sim); r.code != 0 {
		t.Fatalf("reconcile as finance_reconciler: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	want := []auditRow{
		{"job:reconciler", "financectl reconcile", "payment_id=300001 to=succeeded", 200},
		{"job:reconciler", "financectl reconcile", "payment_id=300002 to=failed", 200},
	}
	if diff := cmp.Diff(want, auditRows(t, owner)); diff != "" {
		t.Errorf("admin_audit (-want +got):\n%s", diff)
	}
	if n := countRows(t, owner, `SELECT count(*) FROM payment_transitions WHERE payment_id IN (300001, 300002) AND actor = 'reconciler'`); n != 2 {
		t.Errorf("%d reconciler transitions, want 2", n)
	}
	if r := run(t, reconciler, "verify", "--processor-url", sim); r.code != 0 {
		t.Errorf("verify as finance_reconciler after reconciling: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}
