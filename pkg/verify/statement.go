package verify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/finsvc/finance/pkg/payment"
)

// Execution is one payment the processor executed: money moved. Declines are
// not executions.
type Execution struct {
	Seq            int64     `json:"seq"`
	ID             string    `json:"id"` // the processor's reference
	IdempotencyKey string    `json:"idempotency_key"`
	UserID         int64     `json:"user_id"`
	Amount         int64     `json:"amount"`
	Reference      string    `json:"reference"`
	API            string    `json:"api"`
	ExecutedAt     time.Time `json:"executed_at"`
}

// PaymentUID returns the uid of the payment the execution was made for,
// read from its idempotency key "payment-<uid>" (payment.ParseProcessorKey),
// and false for an execution without such a key: the as-is API sends none,
// and a key of another form is not one of ours. The reference the dispatcher
// also sends ("<payment_id>") is informational only: payment ids repeat after
// a database restore, uids never do.
func (e Execution) PaymentUID() (uuid.UUID, bool) {
	return payment.ParseProcessorKey(e.IdempotencyKey)
}

// Statement is the processor's record of what it executed. processor-sim
// serves one at GET /sim/executions; for the real processor docs/correctness.md
// proposes the same shape.
type Statement interface {
	// Executions yields every execution, in any order, stopping at the first
	// error. It should stream: a statement may hold millions of rows.
	Executions(ctx context.Context) iter.Seq2[Execution, error]
}

// HTTPStatement reads a statement of the processor-sim shape over HTTP:
// GET URL → {"count":N,"executions":[{...}, ...]}, decoded as a stream.
type HTTPStatement struct {
	// URL is the statement's address, e.g. http://127.0.0.1:8090/sim/executions.
	URL string
	// Client defaults to a client with a 5-minute timeout.
	Client *http.Client
}

// NewHTTPStatement returns the statement of the processor-sim at baseURL.
func NewHTTPStatement(baseURL string) *HTTPStatement {
	return &HTTPStatement{URL: strings.TrimRight(baseURL, "/") + "/sim/executions"}
}

// Executions implements Statement.
func (s *HTTPStatement) Executions(ctx context.Context) iter.Seq2[Execution, error] {
	return func(yield func(Execution, error) bool) {
		client := s.Client
		if client == nil {
			client = &http.Client{Timeout: 5 * time.Minute}
		}
		if _, err := url.Parse(s.URL); err != nil {
			yield(Execution{}, fmt.Errorf("statement url: %w", err))
			return
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL, nil)
		if err != nil {
			yield(Execution{}, fmt.Errorf("statement request: %w", err))
			return
		}
		resp, err := client.Do(req)
		if err != nil {
			yield(Execution{}, fmt.Errorf("get statement: %w", err))
			return
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			yield(Execution{}, fmt.Errorf("get statement %s: HTTP %d: %s", s.URL, resp.StatusCode, strings.TrimSpace(string(body))))
			return
		}
		if err := decodeExecutions(resp.Body, yield); err != nil {
			yield(Execution{}, fmt.Errorf("read statement %s: %w", s.URL, err))
		}
	}
}

// errStopped tells decodeExecutions' caller that yield asked to stop.
var errStopped = errors.New("stopped")

// decodeExecutions walks {"executions":[...], ...} token by token so that
// only one execution is in memory at a time.
func decodeExecutions(r io.Reader, yield func(Execution, error) bool) error {
	dec := json.NewDecoder(r)
	if err := expectDelim(dec, '{'); err != nil {
		return err
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		if key, _ := tok.(string); key != "executions" {
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return err
			}
			continue
		}
		if err := expectDelim(dec, '['); err != nil {
			return err
		}
		for dec.More() {
			var e Execution
			if err := dec.Decode(&e); err != nil {
				return err
			}
			if !yield(e, nil) {
				return nil
			}
		}
		if _, err := dec.Token(); err != nil { // ]
			return err
		}
	}
	return nil
}

func expectDelim(dec *json.Decoder, want json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if d, ok := tok.(json.Delim); !ok || d != want {
		return fmt.Errorf("want %q, got %v", want, tok)
	}
	return nil
}

// SliceStatement is a statement held in memory, for tests and small tools.
type SliceStatement []Execution

// Executions implements Statement.
func (s SliceStatement) Executions(context.Context) iter.Seq2[Execution, error] {
	return func(yield func(Execution, error) bool) {
		for _, e := range s {
			if !yield(e, nil) {
				return
			}
		}
	}
}

// StatementTable is the session-local table LoadStatement fills.
const StatementTable = "statement_executions"

// Loaded describes a statement loaded into StatementTable.
type Loaded struct {
	// Present is false when there was no statement to load: the table is
	// empty and says nothing about what the processor did.
	Present bool
	// Executions is the number of rows loaded.
	Executions int64
	// At is the database's clock just before the statement was read: the
	// statement covers at least what the processor executed before At.
	At time.Time
}

// LoadStatement streams stmt into the temporary table StatementTable of
// conn (replacing what a previous call loaded), so that it can be compared
// with the ledger in set-based SQL. A nil stmt loads an empty table.
// Temporary tables belong to one session: run the queries on the same conn.
func LoadStatement(ctx context.Context, conn *pgx.Conn, stmt Statement) (Loaded, error) {
	var l Loaded
	if err := conn.QueryRow(ctx, `SELECT now()`).Scan(&l.At); err != nil {
		return l, fmt.Errorf("read database clock: %w", err)
	}
	if _, err := conn.Exec(ctx, `
		DROP TABLE IF EXISTS `+StatementTable+`;
		CREATE TEMP TABLE `+StatementTable+` (
			seq             bigint,
			ref             text        NOT NULL,
			idempotency_key text        NOT NULL,
			user_id         bigint      NOT NULL,
			amount          bigint      NOT NULL,
			reference       text        NOT NULL,
			api             text        NOT NULL,
			executed_at     timestamptz NOT NULL,
			-- The uid its key names (payment.ParseProcessorKey); NULL for an
			-- execution without a key of ours (as-is).
			payment_uid     uuid
		)`); err != nil {
		return l, fmt.Errorf("create statement table: %w", err)
	}
	if stmt == nil {
		return l, nil
	}
	l.Present = true
	next, stop := iter.Pull2(stmt.Executions(ctx))
	defer stop()
	src := &copySource{next: next}
	n, err := conn.CopyFrom(ctx, pgx.Identifier{StatementTable},
		[]string{"seq", "ref", "idempotency_key", "user_id", "amount", "reference", "api", "executed_at", "payment_uid"}, src)
	if err != nil {
		return l, fmt.Errorf("load statement: %w", err)
	}
	l.Executions = n
	if _, err := conn.Exec(ctx, `
		CREATE INDEX ON `+StatementTable+` (payment_uid);
		CREATE INDEX ON `+StatementTable+` (user_id, amount);
		ANALYZE `+StatementTable); err != nil {
		return l, fmt.Errorf("index statement: %w", err)
	}
	return l, nil
}

// copySource adapts a pulled statement to pgx.CopyFromSource.
type copySource struct {
	next func() (Execution, error, bool)
	cur  Execution
	err  error
}

func (s *copySource) Next() bool {
	e, err, ok := s.next()
	if !ok {
		return false
	}
	if err != nil {
		s.err = err
		return false
	}
	s.cur = e
	return true
}

func (s *copySource) Values() ([]any, error) {
	e := s.cur
	var uid any // NULL unless the key names a payment uid
	if u, ok := e.PaymentUID(); ok {
		uid = u
	}
	return []any{e.Seq, e.ID, e.IdempotencyKey, e.UserID, e.Amount, e.Reference, e.API, e.ExecutedAt, uid}, nil
}

func (s *copySource) Err() error { return s.err }
