package schema_test

import (
	"context"
	"errors"
	"net/url"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/finsvc/finance/pkg/pgtest"
)

// TestServiceRoleGrants checks the least privilege of migrations 00012
// (the services' roles) and 00015 (the reconciler's): each statement runs
// as a role (SET LOCAL ROLE in a transaction that
// is rolled back) and is either allowed or refused with permission denied
// (42501). Both answers are asserted, so a grant that is too wide and one
// that is missing both fail.
func TestServiceRoleGrants(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.NewPool(t)
	for _, sql := range []string{
		`INSERT INTO merchants (id, name) VALUES (1, 'Pleo')`,
		`INSERT INTO wallets (user_id, balance, held) VALUES (7, 1000, 100)`,
		`INSERT INTO payments (id, user_id, merchant_id, amount, status, idempotency_key, request_hash, hold)
		 VALUES (1, 7, 1, -100, 'accepted', 'k1', 'h', 100)`,
		`INSERT INTO outbox (topic, key, payload) VALUES ('payments.requested', 'k', 'v')`,
	} {
		if _, err := pool.Exec(ctx, sql); err != nil {
			t.Fatalf("seed %s: %v", sql, err)
		}
	}

	tests := []struct {
		role, sql string
		allowed   bool
	}{
		// The gateway holds, it never settles.
		{"finance_gateway", `UPDATE wallets SET balance = balance + 1 WHERE user_id = 7`, false},
		{"finance_gateway", `UPDATE wallets SET held = held + 1, event_seq = event_seq + 1, updated_at = now() WHERE user_id = 7`, true},
		{"finance_gateway", `SELECT user_id FROM wallets WHERE user_id = 7 FOR UPDATE`, true},
		{"finance_gateway", `INSERT INTO payments (user_id, merchant_id, amount, status, idempotency_key, request_hash, hold)
			VALUES (7, 1, -1, 'accepted', 'k2', 'h', 1) ON CONFLICT (user_id, idempotency_key) DO NOTHING RETURNING id, uid`, true},
		{"finance_gateway", `UPDATE payments SET status = 'succeeded', hold = 0 WHERE id = 1`, false},
		{"finance_gateway", `INSERT INTO entries (user_id, payment_id, merchant_id, amount, occurred_at) VALUES (7, 1, 1, -100, now())`, false},
		{"finance_gateway", `INSERT INTO outbox (topic, key, payload) VALUES ('payments.requested', 'k', 'v')`, true},
		{"finance_gateway", `DELETE FROM outbox`, false},
		{"finance_gateway", `SELECT p.status FROM payments p WHERE p.id = 1 FOR UPDATE OF p`, true},
		{"finance_gateway", `INSERT INTO dlq_replays (actor, dry_run, force, filter, rate) VALUES ('admin', true, false, '{}', 1) RETURNING id`, true},
		{"finance_gateway", `DELETE FROM dlq_replays`, false},
		{"finance_gateway", `DELETE FROM webhook_endpoints`, true},
		// The status consumer settles.
		{"finance_status_consumer", `UPDATE wallets SET balance = balance - 100, held = held - 100, event_seq = event_seq + 1, updated_at = now() WHERE user_id = 7`, true},
		{"finance_status_consumer", `UPDATE payments SET status = 'succeeded', hold = 0, failure_reason = '', updated_at = now() WHERE id = 1`, true},
		{"finance_status_consumer", `INSERT INTO entries (user_id, payment_id, merchant_id, amount, occurred_at) VALUES (7, 1, 1, -100, now()) ON CONFLICT (payment_id) DO NOTHING`, true},
		{"finance_status_consumer", `UPDATE payments SET amount = 1 WHERE id = 1`, false},
		{"finance_status_consumer", `INSERT INTO payments (user_id, merchant_id, amount, status, idempotency_key, request_hash) VALUES (7, 1, 5, 'accepted', 'k3', 'h')`, false},
		{"finance_status_consumer", `INSERT INTO outbox (topic, key, payload) VALUES ('t', 'k', 'v')`, false},
		{"finance_status_consumer", `SELECT * FROM webhook_endpoints`, false},
		// The relay reads and deletes the outbox, nothing else.
		{"finance_outbox_relay", `SELECT id, topic, key, payload FROM outbox ORDER BY id LIMIT 10`, true},
		{"finance_outbox_relay", `DELETE FROM outbox WHERE id = ANY('{1}')`, true},
		{"finance_outbox_relay", `INSERT INTO outbox (topic, key, payload) VALUES ('t', 'k', 'v')`, false},
		{"finance_outbox_relay", `SELECT * FROM payments`, false},
		// The dispatcher reads payments and claims them.
		{"finance_dispatcher", `INSERT INTO dispatch_claims (payment_id, claimed_by) SELECT id, 'd' FROM payments WHERE id = 1 ON CONFLICT (payment_id) DO NOTHING RETURNING payment_id`, true},
		{"finance_dispatcher", `DELETE FROM dispatch_claims WHERE payment_id = 1`, true},
		{"finance_dispatcher", `UPDATE payments SET status = 'processing' WHERE id = 1`, false},
		{"finance_dispatcher", `SELECT * FROM wallets`, false},
		// Webhook delivery: its queue, and no money.
		{"finance_webhook_delivery", `SELECT id, idempotency_key, created_at FROM payments WHERE id = ANY('{1}')`, true},
		{"finance_webhook_delivery", `UPDATE webhook_endpoints SET enabled = false, disabled_reason = 'gone', updated_at = now()`, true},
		{"finance_webhook_delivery", `UPDATE webhook_endpoints SET secret = 'whsec_x'`, false},
		{"finance_webhook_delivery", `SELECT * FROM wallets`, false},
		{"finance_webhook_delivery", `UPDATE payments SET status = 'failed' WHERE id = 1`, false},
		// The reconciler settles as apply does (pkg/ledger, its event in the
		// outbox, financectl's audit row), reads what its pass and report
		// read, and nothing else: no new payments (recover stays the
		// owner's), no webhook secrets, no DDL.
		{"finance_reconciler", `SELECT uid, user_id, merchant_id, amount, status, hold, failure_reason, created_at FROM payments WHERE id = 1 FOR UPDATE`, true},
		{"finance_reconciler", `SELECT user_id FROM wallets WHERE user_id = ANY('{7}') ORDER BY user_id FOR UPDATE`, true},
		{"finance_reconciler", `INSERT INTO entries (user_id, payment_id, merchant_id, amount, occurred_at) VALUES (7, 1, 1, -100, now()) ON CONFLICT (payment_id) DO NOTHING RETURNING payment_id`, true},
		{"finance_reconciler", `UPDATE wallets SET balance = balance - 100, held = held - 100, event_seq = event_seq + 1, updated_at = now() WHERE user_id = 7 RETURNING user_id, balance, held, event_seq`, true},
		{"finance_reconciler", `UPDATE payments SET status = 'succeeded', hold = 0, failure_reason = '', updated_at = now() WHERE id = 1`, true},
		{"finance_reconciler", `INSERT INTO payment_transitions (payment_id, user_id, user_seq, from_status, to_status, actor, reason)
			VALUES (1, 7, 1, 'unknown', 'succeeded', 'reconciler', 'reconciled') RETURNING created_at`, true},
		{"finance_reconciler", `INSERT INTO outbox (topic, key, payload) VALUES ('payments.events', 'k', 'v')`, true},
		{"finance_reconciler", `INSERT INTO admin_audit (actor, action, target, status) VALUES ('cli:ops', 'financectl reconcile', 'payment_id=1 to=succeeded', 200)`, true},
		{"finance_reconciler", `SELECT (SELECT count(*) FROM outcome_conflicts), (SELECT count(*) FROM restores), (SELECT count(*) FROM dlq_replayed_records)`, true},
		{"finance_reconciler", `INSERT INTO payments (user_id, merchant_id, amount, status, idempotency_key, request_hash) VALUES (7, 1, 5, 'accepted', 'k4', 'h')`, false},
		{"finance_reconciler", `UPDATE payments SET amount = 1 WHERE id = 1`, false},
		{"finance_reconciler", `DELETE FROM payments WHERE id = 1`, false},
		{"finance_reconciler", `DELETE FROM outbox`, false},
		{"finance_reconciler", `SELECT * FROM webhook_endpoints`, false},
		{"finance_reconciler", `UPDATE webhook_endpoints SET secret = 'whsec_x'`, false},
		{"finance_reconciler", `SELECT * FROM admin_audit`, false},
		{"finance_reconciler", `DELETE FROM admin_audit`, false},
		{"finance_reconciler", `INSERT INTO recoveries (payment_id, processor_key, processor_ref, executed_at, actor) VALUES (1, 'k', 'r', now(), 'x')`, false},
		{"finance_reconciler", `TRUNCATE entries`, false},
		{"finance_reconciler", `ALTER TABLE wallets ADD COLUMN note text`, false},
		{"finance_reconciler", `DROP TABLE wallets`, false},
	}
	for _, tt := range tests {
		t.Run(tt.role+"/"+tt.sql, func(t *testing.T) {
			tx, err := pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = tx.Rollback(ctx) }()
			if _, err := tx.Exec(ctx, `SET LOCAL ROLE `+pgx.Identifier{tt.role}.Sanitize()); err != nil {
				t.Fatalf("set role: %v", err)
			}
			_, err = tx.Exec(ctx, tt.sql)
			var pgErr *pgconn.PgError
			denied := errors.As(err, &pgErr) && pgErr.Code == "42501"
			switch {
			case tt.allowed && err != nil:
				t.Errorf("%s as %s: want allowed, got %v", tt.sql, tt.role, err)
			case !tt.allowed && !denied:
				t.Errorf("%s as %s: want permission denied (42501), got %v", tt.sql, tt.role, err)
			}
		})
	}
}

// TestServiceRolesLogIn connects as the gateway's and the reconciler's
// roles, as a deployment's DATABASE_URL would (trust authentication here; a
// password in production), and checks the gateway's login cannot move a
// balance.
func TestServiceRolesLogIn(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	u, err := url.Parse(pgtest.NewDB(t))
	if err != nil {
		t.Fatal(err)
	}
	connect := func(role string) *pgx.Conn {
		t.Helper()
		u.User = url.User(role)
		conn, err := pgx.Connect(ctx, u.String())
		if err != nil {
			t.Fatalf("connect as %s: %v", role, err)
		}
		t.Cleanup(func() { conn.Close(ctx) })
		var who string
		if err := conn.QueryRow(ctx, `SELECT current_user`).Scan(&who); err != nil || who != role {
			t.Fatalf("current_user = %q, %v; want %s", who, err, role)
		}
		return conn
	}
	_, err = connect("finance_gateway").Exec(ctx, `UPDATE wallets SET balance = balance + 1`)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
		t.Fatalf("UPDATE wallets.balance as finance_gateway: want permission denied, got %v", err)
	}
	connect("finance_reconciler")
}
