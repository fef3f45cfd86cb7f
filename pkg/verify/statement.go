package verify

import (
	"context"
	"fmt"
	"iter"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/finsvc/finance/pkg/simclient"
)

// Execution is one payment the processor executed: money moved. It is the
// simulator client's type, so that the statement has one decoder
// (simclient.DecodeExecutions) whoever serves it.
type Execution = simclient.Execution

// Statement is the processor's record of what it executed. processor-sim
// serves one at GET /sim/executions; for the real processor docs/correctness.md
// proposes the same shape.
type Statement interface {
	// Executions yields every execution, in any order, stopping at the first
	// error. It should stream: a statement may hold millions of rows.
	Executions(ctx context.Context) iter.Seq2[Execution, error]
}

// HTTPStatement reads a statement of the processor-sim shape over HTTP:
// GET URL → {"count":N,"executions":[{...}, ...]}, decoded as a stream
// (simclient.ReadExecutions). The URL may be the simulator's or a real
// processor's statement of the same shape (financectl verify
// --statement-url).
type HTTPStatement struct {
	// URL is the statement's address, e.g. http://127.0.0.1:8090/sim/executions.
	URL string
	// Client defaults to http.DefaultClient; the read is bounded by
	// simclient's statement timeout (5 minutes) either way.
	Client *http.Client
}

// NewHTTPStatement returns the statement of the processor-sim at baseURL.
func NewHTTPStatement(baseURL string) *HTTPStatement {
	return &HTTPStatement{URL: simclient.New(baseURL).ExecutionsURL()}
}

// Executions implements Statement.
func (s *HTTPStatement) Executions(ctx context.Context) iter.Seq2[Execution, error] {
	return simclient.ReadExecutions(ctx, s.Client, s.URL)
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
