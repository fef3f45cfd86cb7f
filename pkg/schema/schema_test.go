package schema_test

import (
	"context"
	"os"
	"testing"

	"github.com/finsvc/finance/pkg/pgtest"
	"github.com/finsvc/finance/pkg/postgres"
	"github.com/finsvc/finance/pkg/schema"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func TestMigratedSchemaEnforcesMoneyRules(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.NewPool(t)

	v, err := schema.Version(ctx, pool)
	if err != nil || v < 1 {
		t.Fatalf("version = %d, %v", v, err)
	}
	// Up again is a no-op.
	if _, err := schema.Up(ctx, pool); err != nil {
		t.Fatalf("second Up: %v", err)
	}

	mustExec := func(sql string, args ...any) {
		t.Helper()
		if _, err := pool.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	mustExec(`INSERT INTO merchants (id, name) VALUES (1, 'Pleo')`)
	mustExec(`INSERT INTO wallets (user_id, balance) VALUES (7, 100)`)

	// Holding more than the balance violates the available-balance check.
	_, err = pool.Exec(ctx, `UPDATE wallets SET held = 101 WHERE user_id = 7`)
	if !postgres.IsCheckViolation(err) {
		t.Errorf("overdraft hold: err = %v, want check violation", err)
	}
	// A zero amount is refused.
	_, err = pool.Exec(ctx, `INSERT INTO payments (user_id, merchant_id, amount, status, idempotency_key, request_hash)
		VALUES (7, 1, 0, 'accepted', 'k0', 'h')`)
	if !postgres.IsCheckViolation(err) {
		t.Errorf("zero amount: err = %v, want check violation", err)
	}
	// An idempotency key is unique per user.
	mustExec(`INSERT INTO payments (user_id, merchant_id, amount, status, idempotency_key, request_hash)
		VALUES (7, 1, 5, 'accepted', 'k1', 'h')`)
	_, err = pool.Exec(ctx, `INSERT INTO payments (user_id, merchant_id, amount, status, idempotency_key, request_hash)
		VALUES (7, 1, 6, 'accepted', 'k1', 'h')`)
	if !postgres.IsUniqueViolation(err) {
		t.Errorf("reused key: err = %v, want unique violation", err)
	}
	// An unknown user is refused.
	_, err = pool.Exec(ctx, `INSERT INTO payments (user_id, merchant_id, amount, status, idempotency_key, request_hash)
		VALUES (8, 1, 5, 'accepted', 'k2', 'h')`)
	if !postgres.IsForeignKeyViolation(err) {
		t.Errorf("unknown user: err = %v, want foreign key violation", err)
	}
}
