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
