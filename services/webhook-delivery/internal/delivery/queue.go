package delivery

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/finsvc/finance/pkg/ledger"
	"github.com/finsvc/finance/pkg/postgres"
	"github.com/finsvc/finance/pkg/webhook"
)

// queue is the service's SQL: the webhook_messages queue and the delivery
// log (migration 00010).
type queue struct {
	db *pgxpool.Pool
}

// subscription is an enabled endpoint's filter.
type subscription struct {
	ID     uuid.UUID
	Types  []string
	UserID *int64
}

func (s subscription) wants(t webhook.Type, userID int64) bool {
	if s.UserID != nil && *s.UserID != userID {
		return false
	}
	if len(s.Types) == 0 {
		return true
	}
	for _, x := range s.Types {
		if x == string(t) {
			return true
		}
	}
	return false
}

func (q queue) subscriptions(ctx context.Context) ([]subscription, error) {
	rows, err := q.db.Query(ctx, `SELECT id, event_types, user_id FROM webhook_endpoints WHERE enabled`)
	if err != nil {
		return nil, fmt.Errorf("select endpoints: %w", err)
	}
	subs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (subscription, error) {
		var s subscription
		err := r.Scan(&s.ID, &s.Types, &s.UserID)
		return s, err
	})
	if err != nil {
		return nil, fmt.Errorf("select endpoints: %w", err)
	}
	return subs, nil
}

// stored reads what the events do not carry of their payments.
func (q queue) stored(ctx context.Context, ids []int64) (map[int64]webhook.Stored, error) {
	out := make(map[int64]webhook.Stored, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := q.db.Query(ctx, `SELECT id, idempotency_key, created_at FROM payments WHERE id = ANY($1)`, ids)
	if err != nil {
		return nil, fmt.Errorf("select payments: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var s webhook.Stored
		if err := rows.Scan(&id, &s.IdempotencyKey, &s.CreatedAt); err != nil {
			return nil, fmt.Errorf("select payments: %w", err)
		}
		out[id] = s
	}
	return out, rows.Err()
}

// newMessage is a message to enqueue.
type newMessage struct {
	Endpoint uuid.UUID
	Event    ledger.Event
	Type     webhook.Type
	Payload  []byte
	// TraceParent is the trace context of the event's record (its
	// receive span), nil without one: each attempt is its child.
	TraceParent *string
}

// enqueue inserts messages in one statement; a message already there (a
// redelivered event) is left as it is. It returns how many were new.
func (q queue) enqueue(ctx context.Context, msgs []newMessage) (int64, error) {
	if len(msgs) == 0 {
		return 0, nil
	}
	var (
		eps      = make([]uuid.UUID, len(msgs))
		users    = make([]int64, len(msgs))
		events   = make([]string, len(msgs))
		types    = make([]string, len(msgs))
		payments = make([]int64, len(msgs))
		payloads = make([][]byte, len(msgs))
		parents  = make([]*string, len(msgs))
	)
	for i, m := range msgs {
		eps[i], users[i], events[i], types[i], payments[i], payloads[i], parents[i] =
			m.Endpoint, m.Event.UserID, m.Event.ID(), string(m.Type), m.Event.PaymentID, m.Payload, m.TraceParent
	}
	// WITH ORDINALITY keeps the batch's order in the ids: a lane is sent in
	// id order.
	tag, err := q.db.Exec(ctx, `
		INSERT INTO webhook_messages (endpoint_id, user_id, event_id, event_type, payment_id, payload, traceparent)
		SELECT e, u, ev, t, p, b, tp
		FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::text[], $5::bigint[], $6::bytea[], $7::text[])
			WITH ORDINALITY AS x(e, u, ev, t, p, b, tp, n)
		ORDER BY n
		ON CONFLICT (endpoint_id, event_id) DO NOTHING`,
		eps, users, events, types, payments, payloads, parents)
	if err != nil {
		return 0, fmt.Errorf("insert webhook messages: %w", err)
	}
	return tag.RowsAffected(), nil
}

// claimed is a message taken for one attempt, with its endpoint.
type claimed struct {
	ID         int64
	EndpointID uuid.UUID
	UserID     int64
	PaymentID  int64
	EventID    string
	EventType  string
	Payload    []byte
	Attempts   int
	CreatedAt  time.Time
	URL        string
	Secrets    []webhook.Secret
	// TraceParent is the stored trace context of the event (newMessage).
	TraceParent *string
}

// claim leases up to n due messages, each the head of its (endpoint, user)
// lane, of enabled endpoints not in skip, for lease.
func (q queue) claim(ctx context.Context, n int, skip []uuid.UUID, lease time.Duration) ([]claimed, error) {
	if skip == nil {
		skip = []uuid.UUID{}
	}
	// The lanes' heads are found by a loose index scan of the pending
	// lane index (endpoint_id, user_id, id), one endpoint at a time: one
	// probe per lane for its lowest pending id, never reading the messages
	// queued behind it. Only the lanes of enabled endpoints not in skip
	// are walked: the lanes of an endpoint at its bound or behind an open
	// breaker (a dead one, whose lanes stay full) cost the claim nothing,
	// so a dead endpoint does not slow the claims of the healthy ones. A
	// head that is leased (in flight) or not due holds its lane.
	rows, err := q.db.Query(ctx, `
		WITH RECURSIVE heads AS (
			SELECT e.id AS endpoint_id, f.user_id, f.id
			FROM webhook_endpoints e
			CROSS JOIN LATERAL (
				SELECT m.user_id, m.id FROM webhook_messages m
				WHERE m.state = 'pending' AND m.endpoint_id = e.id
				ORDER BY m.user_id, m.id LIMIT 1) f
			WHERE e.enabled AND NOT (e.id = ANY($2::uuid[]))
			UNION ALL
			SELECT h.endpoint_id, nx.user_id, nx.id
			FROM heads h, LATERAL (
				SELECT m.user_id, m.id FROM webhook_messages m
				WHERE m.state = 'pending' AND m.endpoint_id = h.endpoint_id AND m.user_id > h.user_id
				ORDER BY m.user_id, m.id LIMIT 1) nx),
		due AS (
			SELECT c.id
			FROM heads h
			JOIN webhook_messages c ON c.id = h.id
			WHERE c.state = 'pending' AND c.next_attempt_at <= now()
			  AND (c.leased_until IS NULL OR c.leased_until < now())
			ORDER BY c.next_attempt_at, c.id
			LIMIT $1
			FOR UPDATE OF c SKIP LOCKED)
		UPDATE webhook_messages m
		SET leased_until = now() + $3::bigint * interval '1 millisecond', updated_at = now()
		FROM due, webhook_endpoints w
		WHERE m.id = due.id AND w.id = m.endpoint_id
		RETURNING m.id, m.endpoint_id, m.user_id, m.payment_id, m.event_id, m.event_type, m.payload, m.attempts, m.created_at,
			m.traceparent, w.url, w.secret,
			CASE WHEN w.previous_secret_expires_at > now() THEN w.previous_secret ELSE NULL END`,
		n, skip, lease.Milliseconds())
	if err != nil {
		return nil, fmt.Errorf("claim webhook messages: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (claimed, error) {
		var c claimed
		var secret string
		var prev *string
		if err := r.Scan(&c.ID, &c.EndpointID, &c.UserID, &c.PaymentID, &c.EventID, &c.EventType, &c.Payload, &c.Attempts, &c.CreatedAt,
			&c.TraceParent, &c.URL, &secret, &prev); err != nil {
			return c, err
		}
		s, err := webhook.ParseSecret(secret)
		if err != nil {
			return c, fmt.Errorf("endpoint %s: %w", c.EndpointID, err)
		}
		c.Secrets = []webhook.Secret{s}
		if prev != nil {
			if p, err := webhook.ParseSecret(*prev); err == nil {
				c.Secrets = append(c.Secrets, p)
			}
		}
		return c, nil
	})
	if err != nil {
		return nil, fmt.Errorf("claim webhook messages: %w", err)
	}
	return out, nil
}

// release gives leased messages back untried (their endpoint was busy).
func (q queue) release(ctx context.Context, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	_, err := q.db.Exec(ctx, `UPDATE webhook_messages SET leased_until = NULL WHERE id = ANY($1) AND state = 'pending'`, ids)
	if err != nil {
		return fmt.Errorf("release webhook messages: %w", err)
	}
	return nil
}

// attempt is one delivery attempt's record.
type attempt struct {
	Status   int
	Latency  time.Duration
	Response string
	Err      string
}

// verdict is what an attempt decided for its message.
type verdict int

const (
	delivered verdict = iota
	retry             // again at next
	givenUp           // retries spent: to the DLQ
	gone              // 410: the endpoint is disabled
)

// finished is an attempt to record with the message's new state.
type finished struct {
	c    claimed
	a    attempt
	v    verdict
	next time.Time // retry: when the next attempt is due
}

// finish records attempts and their messages' new states in one
// transaction: one INSERT of the attempts and one UPDATE of the messages
// for the whole batch. For givenUp it disables the endpoint when it
// delivered nothing since the message was made (it keeps failing), for
// gone always; disabled[i] reports whether fs[i] did.
func (q queue) finish(ctx context.Context, fs []finished) (disabled []bool, err error) {
	n := len(fs)
	var (
		ids      = make([]int64, n)
		eps      = make([]uuid.UUID, n)
		users    = make([]int64, n)
		events   = make([]string, n)
		numbers  = make([]int32, n)
		statuses = make([]int32, n)
		latency  = make([]int64, n)
		answers  = make([]string, n)
		errs     = make([]string, n)
		states   = make([]string, n)
		nexts    = make([]*time.Time, n)
		lastErrs = make([]string, n)
	)
	for i, f := range fs {
		ids[i], eps[i], users[i], events[i] = f.c.ID, f.c.EndpointID, f.c.UserID, f.c.EventID
		numbers[i], statuses[i], latency[i] = int32(f.c.Attempts+1), int32(f.a.Status), f.a.Latency.Milliseconds()
		answers[i], errs[i] = f.a.Response, f.a.Err
		switch f.v {
		case delivered:
			states[i] = "delivered"
		case retry:
			states[i], lastErrs[i] = "pending", f.a.errText()
			next := f.next
			nexts[i] = &next
		default:
			states[i], lastErrs[i] = "failed", f.a.errText()
		}
	}
	err = postgres.InTx(ctx, q.db, func(tx pgx.Tx) error {
		disabled = make([]bool, n)
		if _, err := tx.Exec(ctx, `
			INSERT INTO webhook_attempts (message_id, endpoint_id, user_id, event_id, attempt, status_code, latency_ms, response, error)
			SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::bigint[], $4::text[], $5::int[], $6::int[], $7::bigint[], $8::text[], $9::text[])`,
			ids, eps, users, events, numbers, statuses, latency, answers, errs); err != nil {
			return fmt.Errorf("insert webhook attempts: %w", err)
		}
		if _, err := tx.Exec(ctx, `
			UPDATE webhook_messages m
			SET state = x.state, attempts = x.n, next_attempt_at = COALESCE(x.next, m.next_attempt_at),
				leased_until = NULL, last_error = x.err, updated_at = now()
			FROM unnest($1::bigint[], $2::text[], $3::int[], $4::timestamptz[], $5::text[]) AS x(id, state, n, next, err)
			WHERE m.id = x.id`,
			ids, states, numbers, nexts, lastErrs); err != nil {
			return fmt.Errorf("update webhook messages: %w", err)
		}
		for i, f := range fs {
			var tag pgconn.CommandTag
			var err error
			switch f.v {
			case gone:
				tag, err = tx.Exec(ctx, `UPDATE webhook_endpoints SET enabled = false, disabled_reason = 'gone', updated_at = now()
					WHERE id = $1 AND enabled`, f.c.EndpointID)
			case givenUp:
				tag, err = tx.Exec(ctx, `UPDATE webhook_endpoints SET enabled = false, disabled_reason = 'failing', updated_at = now()
					WHERE id = $1 AND enabled AND NOT EXISTS (
						SELECT 1 FROM webhook_messages WHERE endpoint_id = $1 AND state = 'delivered' AND updated_at >= $2)`,
					f.c.EndpointID, f.c.CreatedAt)
			default:
				continue
			}
			if err != nil {
				return fmt.Errorf("disable endpoint %s: %w", f.c.EndpointID, err)
			}
			disabled[i] = tag.RowsAffected() == 1
		}
		return nil
	})
	return disabled, err
}

func (a attempt) errText() string {
	if a.Err != "" {
		return a.Err
	}
	return fmt.Sprintf("status %d", a.Status)
}
