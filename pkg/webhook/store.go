package webhook

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// MaxDescription bounds an endpoint's description, in bytes.
const MaxDescription = 512

// ErrNotFound is an endpoint or message that does not exist.
var ErrNotFound = errors.New("webhook: not found")

// Endpoint is a registered endpoint as its owner sees it. The secret is
// shown only by Create and RotateSecret.
type Endpoint struct {
	ID             uuid.UUID `json:"id"`
	URL            string    `json:"url"`
	EventTypes     []string  `json:"event_types"`
	UserID         *int64    `json:"user_id"`
	Description    string    `json:"description"`
	Enabled        bool      `json:"enabled"`
	DisabledReason string    `json:"disabled_reason,omitempty"`
	// Secret is set only in the answers of Create and RotateSecret.
	Secret                  string     `json:"secret,omitempty"`
	PreviousSecretExpiresAt *time.Time `json:"previous_secret_expires_at,omitempty"`
	CreatedAt               time.Time  `json:"created_at"`
	UpdatedAt               time.Time  `json:"updated_at"`
}

// Spec is what a caller sets of an endpoint.
type Spec struct {
	URL         string
	EventTypes  []string
	UserID      *int64
	Description string
	Enabled     bool
	CreatedBy   string
}

// Validate checks a spec under policy p: the URL (CheckURL), every event
// type, the description's length. The error says what is wrong, for a 422.
func (p Policy) Validate(ctx context.Context, s Spec) error {
	var errs []error
	if _, err := p.CheckURL(ctx, s.URL); err != nil {
		errs = append(errs, err)
	}
	for _, t := range s.EventTypes {
		if _, err := ParseType(t); err != nil {
			errs = append(errs, err)
		}
	}
	if len(s.Description) > MaxDescription {
		errs = append(errs, fmt.Errorf("description is %d bytes; at most %d", len(s.Description), MaxDescription))
	}
	if s.UserID != nil && *s.UserID <= 0 {
		errs = append(errs, errors.New("user_id must be positive"))
	}
	return errors.Join(errs...)
}

// Store is the endpoints' and the delivery log's SQL for the gateway and
// financectl.
type Store struct {
	db querier
}

// querier is what the store's SQL runs on: a pool, or one transaction.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// NewStore returns a store on db.
func NewStore(db *pgxpool.Pool) *Store { return &Store{db: db} }

// InTx returns the store's SQL on tx, so that a caller writes something of
// its own in the change's transaction (financectl its admin_audit row).
func (s *Store) InTx(tx pgx.Tx) *Store { return &Store{db: tx} }

const endpointColumns = `id, url, event_types, user_id, description, enabled, disabled_reason,
	previous_secret_expires_at, created_at, updated_at`

func scanEndpoint(row pgx.Row) (Endpoint, error) {
	var e Endpoint
	err := row.Scan(&e.ID, &e.URL, &e.EventTypes, &e.UserID, &e.Description, &e.Enabled, &e.DisabledReason,
		&e.PreviousSecretExpiresAt, &e.CreatedAt, &e.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return e, ErrNotFound
	}
	return e, err
}

// Create stores a validated spec with a new secret and returns it, the
// secret shown.
func (s *Store) Create(ctx context.Context, sp Spec) (Endpoint, error) {
	sec := NewSecret()
	if sp.EventTypes == nil {
		sp.EventTypes = []string{}
	}
	e, err := scanEndpoint(s.db.QueryRow(ctx, `INSERT INTO webhook_endpoints (url, event_types, user_id, description, enabled, secret, created_by)
		VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING `+endpointColumns,
		sp.URL, sp.EventTypes, sp.UserID, sp.Description, sp.Enabled, sec.Reveal(), sp.CreatedBy))
	if err != nil {
		return Endpoint{}, fmt.Errorf("insert webhook endpoint: %w", err)
	}
	e.Secret = sec.Reveal()
	return e, nil
}

// Get returns endpoint id.
func (s *Store) Get(ctx context.Context, id uuid.UUID) (Endpoint, error) {
	return scanEndpoint(s.db.QueryRow(ctx, `SELECT `+endpointColumns+` FROM webhook_endpoints WHERE id = $1`, id))
}

// List returns the endpoints of user (every endpoint when user is nil),
// oldest first.
func (s *Store) List(ctx context.Context, user *int64) ([]Endpoint, error) {
	rows, err := s.db.Query(ctx, `SELECT `+endpointColumns+` FROM webhook_endpoints
		WHERE $1::bigint IS NULL OR user_id = $1 ORDER BY created_at, id`, user)
	if err != nil {
		return nil, fmt.Errorf("select webhook endpoints: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Endpoint, error) { return scanEndpoint(r) })
}

// Update replaces endpoint id's settings with sp (validated; its UserID and
// CreatedBy are not changed). Enabling clears the reason it was disabled.
func (s *Store) Update(ctx context.Context, id uuid.UUID, sp Spec) (Endpoint, error) {
	if sp.EventTypes == nil {
		sp.EventTypes = []string{}
	}
	return scanEndpoint(s.db.QueryRow(ctx, `UPDATE webhook_endpoints SET url = $2, event_types = $3, description = $4,
		enabled = $5, disabled_reason = CASE WHEN $5 THEN '' ELSE disabled_reason END, updated_at = now()
		WHERE id = $1 RETURNING `+endpointColumns, id, sp.URL, sp.EventTypes, sp.Description, sp.Enabled))
}

// Delete removes endpoint id with its messages and delivery log.
func (s *Store) Delete(ctx context.Context, id uuid.UUID) error {
	tag, err := s.db.Exec(ctx, `DELETE FROM webhook_endpoints WHERE id = $1`, id)
	if err != nil {
		return fmt.Errorf("delete webhook endpoint %s: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

// RotateSecret gives endpoint id a new secret; the old one keeps signing
// beside it for overlap. It returns the endpoint, the new secret shown.
func (s *Store) RotateSecret(ctx context.Context, id uuid.UUID, overlap time.Duration) (Endpoint, error) {
	sec := NewSecret()
	e, err := scanEndpoint(s.db.QueryRow(ctx, `UPDATE webhook_endpoints SET previous_secret = secret,
		previous_secret_expires_at = now() + $3::bigint * interval '1 millisecond', secret = $2, updated_at = now()
		WHERE id = $1 RETURNING `+endpointColumns, id, sec.Reveal(), overlap.Milliseconds()))
	if err != nil {
		return Endpoint{}, err
	}
	e.Secret = sec.Reveal()
	return e, nil
}

// Attempt is one row of the delivery log.
type Attempt struct {
	ID          int64     `json:"id"`
	MessageID   int64     `json:"message_id"`
	EndpointID  uuid.UUID `json:"endpoint_id"`
	UserID      int64     `json:"user_id"`
	EventID     string    `json:"event_id"`
	Attempt     int       `json:"attempt"`
	StatusCode  int       `json:"status_code"`
	LatencyMS   int       `json:"latency_ms"`
	Response    string    `json:"response"`
	Error       string    `json:"error,omitempty"`
	AttemptedAt time.Time `json:"attempted_at"`
}

// LogFilter selects delivery log rows: an endpoint (required), optionally
// one event, a time range, newest first, at most Limit.
type LogFilter struct {
	EndpointID uuid.UUID
	EventID    string
	Since      time.Time
	Until      time.Time
	Limit      int
}

// Log returns the delivery log rows f selects.
func (s *Store) Log(ctx context.Context, f LogFilter) ([]Attempt, error) {
	if f.Limit <= 0 || f.Limit > 1000 {
		f.Limit = 100
	}
	if f.Until.IsZero() {
		f.Until = time.Now().Add(time.Hour)
	}
	rows, err := s.db.Query(ctx, `SELECT id, message_id, endpoint_id, user_id, event_id, attempt, status_code, latency_ms,
			response, error, attempted_at
		FROM webhook_attempts
		WHERE endpoint_id = $1 AND ($2 = '' OR event_id = $2) AND attempted_at >= $3 AND attempted_at < $4
		ORDER BY attempted_at DESC, id DESC LIMIT $5`, f.EndpointID, f.EventID, f.Since, f.Until, f.Limit)
	if err != nil {
		return nil, fmt.Errorf("select webhook attempts: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowToStructByPos[Attempt])
}

// Resend puts message (endpoint, event) back in the queue: pending, its
// attempts at 0, due now. The delivery log keeps the earlier attempts.
func (s *Store) Resend(ctx context.Context, endpointID uuid.UUID, eventID string) error {
	tag, err := s.db.Exec(ctx, `UPDATE webhook_messages SET state = 'pending', attempts = 0, next_attempt_at = now(),
		leased_until = NULL, updated_at = now() WHERE endpoint_id = $1 AND event_id = $2`, endpointID, eventID)
	if err != nil {
		return fmt.Errorf("resend webhook message: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

// Recover resends every failed message of endpoint id queued since since,
// and returns how many.
func (s *Store) Recover(ctx context.Context, id uuid.UUID, since time.Time) (int64, error) {
	tag, err := s.db.Exec(ctx, `UPDATE webhook_messages SET state = 'pending', attempts = 0, next_attempt_at = now(),
		leased_until = NULL, updated_at = now() WHERE endpoint_id = $1 AND state = 'failed' AND created_at >= $2`, id, since)
	if err != nil {
		return 0, fmt.Errorf("recover webhook messages: %w", err)
	}
	return tag.RowsAffected(), nil
}
