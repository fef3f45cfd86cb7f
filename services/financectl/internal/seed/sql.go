package seed

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/finsvc/finance/pkg/payment"
)

// ensureMerchants inserts the merchants that do not exist yet. It returns how
// many it created and, for ids that exist under another name, the name kept.
func ensureMerchants(ctx context.Context, q querier, ms []Merchant) (int, []Merchant, error) {
	ids := make([]int64, len(ms))
	names := make([]string, len(ms))
	for i, m := range ms {
		ids[i], names[i] = m.ID, m.Name
	}
	tag, err := q.Exec(ctx, `
		INSERT INTO merchants (id, name)
		SELECT * FROM unnest($1::bigint[], $2::text[])
		ON CONFLICT (id) DO NOTHING`, ids, names)
	if err != nil {
		return 0, nil, fmt.Errorf("insert merchants: %w", err)
	}
	rows, err := q.Query(ctx, `
		SELECT m.id, m.name
		FROM merchants m JOIN unnest($1::bigint[], $2::text[]) AS d (id, name) ON d.id = m.id
		WHERE m.name <> d.name
		ORDER BY m.id`, ids, names)
	if err != nil {
		return 0, nil, fmt.Errorf("check merchant names: %w", err)
	}
	conflicts, err := pgx.CollectRows(rows, pgx.RowToStructByPos[Merchant])
	if err != nil {
		return 0, nil, fmt.Errorf("check merchant names: %w", err)
	}
	return int(tag.RowsAffected()), conflicts, nil
}

// insertUserRangeSQL creates the wallets lo..hi ($1..$2) that do not exist
// and, when the balance $3 is not 0, gives each new wallet a succeeded seed
// payment from merchant $4 with its entry and its transition (actor $5), all
// in one statement generated on the server: nothing per user crosses the
// wire. request_hash is payment.RequestHash computed in SQL (the decimal
// user, merchant and amount, each followed by a zero byte, SHA-256, hex).
// Wallets that already exist are left alone and not counted.
const insertUserRangeSQL = `
WITH w AS (
	INSERT INTO wallets (user_id, balance, event_seq)
	SELECT g, $3::bigint, CASE WHEN $3::bigint = 0 THEN 0 ELSE 1 END
	FROM generate_series($1::bigint, $2::bigint) AS g
	ON CONFLICT (user_id) DO NOTHING
	RETURNING user_id
), p AS (
	INSERT INTO payments (user_id, merchant_id, amount, status, idempotency_key, request_hash, source)
	SELECT w.user_id, $4::bigint, $3::bigint, 'succeeded', 'seed-' || w.user_id,
		encode(sha256(
			convert_to(w.user_id::text, 'UTF8') || decode('00', 'hex') ||
			convert_to($4::bigint::text, 'UTF8') || decode('00', 'hex') ||
			convert_to($3::bigint::text, 'UTF8') || decode('00', 'hex')), 'hex'),
		'seed'
	FROM w
	WHERE $3::bigint <> 0
	RETURNING id, user_id, amount, created_at
), e AS (
	INSERT INTO entries (user_id, payment_id, merchant_id, amount, occurred_at, settled_at)
	SELECT user_id, id, $4::bigint, amount, created_at, created_at FROM p
), t AS (
	INSERT INTO payment_transitions (payment_id, user_id, user_seq, from_status, to_status, actor, reason, created_at)
	SELECT id, user_id, 1, '', 'succeeded', $5::text, 'starting balance', created_at FROM p
)
SELECT count(*) FROM w`

// insertUserRange creates the users lo..hi that do not exist yet, each with a
// starting balance of balance, and returns how many it created.
func insertUserRange(ctx context.Context, q querier, lo, hi, balance int64) (int64, error) {
	var n int64
	if err := q.QueryRow(ctx, insertUserRangeSQL, lo, hi, balance, PleoID, Actor).Scan(&n); err != nil {
		return 0, fmt.Errorf("insert users %d..%d: %w", lo, hi, err)
	}
	return n, nil
}

// insertExampleUser creates user 3456 with the challenge's example feed, with
// the payments' original ids and times, unless the wallet exists. It reports
// whether it created the user.
func insertExampleUser(ctx context.Context, q querier) (bool, error) {
	ps := ExamplePayments()
	var balance int64
	for _, p := range ps {
		balance += p.Amount
	}
	var id int64
	err := q.QueryRow(ctx, `
		INSERT INTO wallets (user_id, balance, event_seq, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (user_id) DO NOTHING
		RETURNING user_id`,
		ExampleUserID, balance, len(ps), ps[0].At, ps[len(ps)-1].At).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("insert wallet %d: %w", ExampleUserID, err)
	}
	for i, p := range ps {
		if _, err := q.Exec(ctx, `
			INSERT INTO payments (id, user_id, merchant_id, amount, status, idempotency_key, request_hash, source, created_at, updated_at)
			VALUES ($1, $2, $3, $4, 'succeeded', $5, $6, 'seed', $7, $7)`,
			p.ID, p.UserID, p.MerchantID, p.Amount, fmt.Sprintf("demo-%d", p.ID),
			payment.RequestHash(p.UserID, p.MerchantID, p.Amount), p.At); err != nil {
			return false, fmt.Errorf("insert payment %d: %w", p.ID, err)
		}
		if _, err := q.Exec(ctx, `
			INSERT INTO entries (user_id, payment_id, merchant_id, amount, occurred_at, settled_at)
			VALUES ($1, $2, $3, $4, $5, $5)`,
			p.UserID, p.ID, p.MerchantID, p.Amount, p.At); err != nil {
			return false, fmt.Errorf("insert entry of payment %d: %w", p.ID, err)
		}
		if _, err := q.Exec(ctx, `
			INSERT INTO payment_transitions (payment_id, user_id, user_seq, from_status, to_status, actor, reason, created_at)
			VALUES ($1, $2, $3, '', 'succeeded', $4, 'challenge example feed', $5)`,
			p.ID, p.UserID, i+1, Actor, p.At); err != nil {
			return false, fmt.Errorf("insert transition of payment %d: %w", p.ID, err)
		}
	}
	return true, nil
}
