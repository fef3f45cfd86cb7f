// Package outbox is the transactional outbox: a record is written in the same
// PostgreSQL transaction as the state change it announces, and the outbox
// relay publishes it to Kafka afterwards. No service writes to PostgreSQL and
// Kafka as two independent steps.
package outbox

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Channel is the LISTEN/NOTIFY channel that wakes the relay when a record is
// written; the notification is delivered when the writing transaction commits.
const Channel = "outbox"

// Record is one message waiting in the outbox.
type Record struct {
	ID      int64
	Topic   string
	Key     []byte
	Payload []byte
}

// Insert adds a record to the outbox inside tx and notifies the relay.
func Insert(ctx context.Context, tx pgx.Tx, topic string, key, payload []byte) error {
	if _, err := tx.Exec(ctx,
		`INSERT INTO outbox (topic, key, payload) VALUES ($1, $2, $3)`, topic, key, payload); err != nil {
		return fmt.Errorf("insert outbox record for %s: %w", topic, err)
	}
	if _, err := tx.Exec(ctx, `SELECT pg_notify($1, '')`, Channel); err != nil {
		return fmt.Errorf("notify outbox: %w", err)
	}
	return nil
}

// InsertMany adds recs to the outbox inside tx in one statement, their ids
// ascending in slice order (the relay publishes in id order), and notifies
// the relay once. The records' IDs are ignored.
func InsertMany(ctx context.Context, tx pgx.Tx, recs []Record) error {
	topics := make([]string, len(recs))
	keys := make([][]byte, len(recs))
	payloads := make([][]byte, len(recs))
	for i, r := range recs {
		topics[i], keys[i], payloads[i] = r.Topic, r.Key, r.Payload
	}
	if _, err := tx.Exec(ctx, `
		INSERT INTO outbox (topic, key, payload)
		SELECT topic, key, payload
		FROM unnest($1::text[], $2::bytea[], $3::bytea[]) WITH ORDINALITY AS r(topic, key, payload, n)
		ORDER BY n`, topics, keys, payloads); err != nil {
		return fmt.Errorf("insert %d outbox records: %w", len(recs), err)
	}
	if _, err := tx.Exec(ctx, `SELECT pg_notify($1, '')`, Channel); err != nil {
		return fmt.Errorf("notify outbox: %w", err)
	}
	return nil
}
