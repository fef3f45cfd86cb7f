// Package outbox is the transactional outbox: a record is written in the same
// PostgreSQL transaction as the state change it announces, and the outbox
// relay publishes it to Kafka afterwards. No service writes to PostgreSQL and
// Kafka as two independent steps.
package outbox

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/finsvc/finance/pkg/obs"
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
	// TraceParent is the W3C traceparent of the span that wrote the
	// record (obs.TraceParent), nil when there was none. The relay
	// produces the record as a child of it, so the trace goes on in Kafka.
	TraceParent *string
}

// traceParent is obs.TraceParent of ctx as the column's value: NULL
// when ctx holds no span.
func traceParent(ctx context.Context) *string {
	if tp := obs.TraceParent(ctx); tp != "" {
		return &tp
	}
	return nil
}

// Insert adds a record to the outbox inside tx and notifies the relay. The
// record keeps the trace context of ctx (Record.TraceParent).
func Insert(ctx context.Context, tx pgx.Tx, topic string, key, payload []byte) error {
	if _, err := tx.Exec(ctx,
		`INSERT INTO outbox (topic, key, payload, traceparent) VALUES ($1, $2, $3, $4)`,
		topic, key, payload, traceParent(ctx)); err != nil {
		return fmt.Errorf("insert outbox record for %s: %w", topic, err)
	}
	if _, err := tx.Exec(ctx, `SELECT pg_notify($1, '')`, Channel); err != nil {
		return fmt.Errorf("notify outbox: %w", err)
	}
	return nil
}

// NewTraceParent is the TraceParent of a record written on behalf of ctx
// (the request whose payment a batch accepts): nil when ctx holds no span.
func NewTraceParent(ctx context.Context) *string {
	return traceParent(ctx)
}

// InsertMany adds recs to the outbox inside tx in one statement, their ids
// ascending in slice order (the relay publishes in id order), and notifies
// the relay once, in one round trip (QueueMany). The records' IDs are
// ignored; each keeps its own TraceParent (a batch holds the records of many
// requests), which the caller sets with NewTraceParent.
func InsertMany(ctx context.Context, tx pgx.Tx, recs []Record) error {
	var b pgx.Batch
	QueueMany(&b, recs)
	if err := tx.SendBatch(ctx, &b).Close(); err != nil {
		return fmt.Errorf("insert %d outbox records: %w", len(recs), err)
	}
	return nil
}

// QueueMany queues InsertMany's two statements (the records' insert and the
// relay's notification) on b, for a caller that sends them with statements
// of its own in one round trip.
func QueueMany(b *pgx.Batch, recs []Record) {
	topics := make([]string, len(recs))
	keys := make([][]byte, len(recs))
	payloads := make([][]byte, len(recs))
	parents := make([]*string, len(recs))
	for i, r := range recs {
		topics[i], keys[i], payloads[i], parents[i] = r.Topic, r.Key, r.Payload, r.TraceParent
	}
	b.Queue(`
		INSERT INTO outbox (topic, key, payload, traceparent)
		SELECT topic, key, payload, traceparent
		FROM unnest($1::text[], $2::bytea[], $3::bytea[], $4::text[]) WITH ORDINALITY AS r(topic, key, payload, traceparent, n)
		ORDER BY n`, topics, keys, payloads, parents)
	b.Queue(`SELECT pg_notify($1, '')`, Channel)
}
