package verify

import (
	"context"
	"errors"
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

// IncrementalStatement is a Statement that can also yield only what the
// processor executed after a sequence number, so that a reader that keeps
// what it loaded (the reconciler, every pass) fetches the rest alone
// (AppendStatement).
type IncrementalStatement interface {
	Statement
	// ExecutionsAfter yields the executions numbered above seq, in
	// sequence order; it may yield earlier ones too, which are skipped.
	ExecutionsAfter(ctx context.Context, seq int64) iter.Seq2[Execution, error]
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

// ExecutionsAfter implements IncrementalStatement with GET URL?after_seq=seq.
func (s *HTTPStatement) ExecutionsAfter(ctx context.Context, seq int64) iter.Seq2[Execution, error] {
	return simclient.ReadExecutions(ctx, s.Client, simclient.AfterSeqURL(s.URL, seq))
}

// SliceStatement is a statement held in memory, for tests and small tools.
type SliceStatement []Execution

// ExecutionsAfter implements IncrementalStatement.
func (s SliceStatement) ExecutionsAfter(_ context.Context, seq int64) iter.Seq2[Execution, error] {
	return func(yield func(Execution, error) bool) {
		for _, e := range s {
			if e.Seq > seq && !yield(e, nil) {
				return
			}
		}
	}
}

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
	// LastSeq and LastRef are the highest-numbered execution loaded, where
	// AppendStatement goes on from; LastSeq is 0 when the statement was
	// empty or its executions are not numbered (it cannot be appended to).
	LastSeq int64
	LastRef string
	// SucceededAfter, when not 0, narrows SucceededNotExecuted to the
	// (user, amount) groups of the payments that succeeded in a
	// payment_transitions row numbered above it, each group still compared
	// whole. A watching reconciler sets it to what its earlier clean passes
	// covered (reconcile.Reconciler): executions are only ever added and a
	// success is final, so a group that compared clean stays clean until
	// one of its payments succeeds. 0 compares every succeeded payment.
	SucceededAfter int64
	// analyzed is Executions when the table's statistics were last taken.
	analyzed int64
}

// ErrStatementChanged says that the processor's statement no longer starts
// with what was loaded (its execution LastSeq is gone or is another one: a
// simulator started afresh, another processor): it must be loaded whole
// again.
var ErrStatementChanged = errors.New("the statement no longer holds the executions loaded before")

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
	l.Executions, l.analyzed = n, n
	if _, err := conn.Exec(ctx, `
		CREATE INDEX ON `+StatementTable+` (payment_uid);
		CREATE INDEX ON `+StatementTable+` (user_id, amount);
		ANALYZE `+StatementTable); err != nil {
		return l, fmt.Errorf("index statement: %w", err)
	}
	// Appendable when every execution has its own number.
	var distinct int64
	err = conn.QueryRow(ctx, `
		SELECT coalesce(max(seq), 0), coalesce((array_agg(ref ORDER BY seq DESC))[1], ''), count(DISTINCT seq)
		FROM `+StatementTable+` WHERE seq > 0`).Scan(&l.LastSeq, &l.LastRef, &distinct)
	if err != nil {
		return l, fmt.Errorf("read the statement's last execution: %w", err)
	}
	if distinct != n {
		l.LastSeq, l.LastRef = 0, ""
	}
	return l, nil
}

// AppendStatement brings the statement loaded on conn by LoadStatement (or a
// previous AppendStatement, prev) up to date: it reads only what the
// processor executed after prev.LastSeq, and adds it. The statement must
// still hold execution prev.LastSeq as it was (read again, as a check), or
// nothing is added and the error is ErrStatementChanged. Statistics are
// taken again once the table has grown by a fifth.
func AppendStatement(ctx context.Context, conn *pgx.Conn, stmt IncrementalStatement, prev Loaded) (Loaded, error) {
	l := prev
	if !prev.Present || prev.LastSeq == 0 {
		return prev, fmt.Errorf("%w: nothing numbered was loaded to go on from", ErrStatementChanged)
	}
	if err := conn.QueryRow(ctx, `SELECT now()`).Scan(&l.At); err != nil {
		return prev, fmt.Errorf("read database clock: %w", err)
	}
	next, stop := iter.Pull2(stmt.ExecutionsAfter(ctx, prev.LastSeq-1))
	defer stop()
	// The execution loaded last, again: the same one, or the statement is
	// another one.
	for {
		e, err, ok := next()
		switch {
		case !ok:
			return prev, fmt.Errorf("%w: execution %d is gone", ErrStatementChanged, prev.LastSeq)
		case err != nil:
			return prev, fmt.Errorf("read statement: %w", err)
		case e.Seq < prev.LastSeq:
			continue // a server that ignores after_seq
		case e.Seq != prev.LastSeq || e.ID != prev.LastRef:
			return prev, fmt.Errorf("%w: execution %d is %d %q, was %q", ErrStatementChanged, prev.LastSeq, e.Seq, e.ID, prev.LastRef)
		}
		break
	}
	src := &copySource{next: next, after: prev.LastSeq}
	n, err := conn.CopyFrom(ctx, pgx.Identifier{StatementTable},
		[]string{"seq", "ref", "idempotency_key", "user_id", "amount", "reference", "api", "executed_at", "payment_uid"}, src)
	if errors.Is(src.err, errOutOfOrder) {
		// Nothing was added: the failed source aborted the COPY.
		return prev, fmt.Errorf("%w: %w", ErrStatementChanged, src.err)
	}
	if err != nil {
		return prev, fmt.Errorf("append to statement: %w", err)
	}
	l.Executions += n
	if n > 0 {
		l.LastSeq, l.LastRef = src.cur.Seq, src.cur.ID // the last one copied
	}
	if l.Executions-l.analyzed > l.analyzed/5 {
		if _, err := conn.Exec(ctx, `ANALYZE `+StatementTable); err != nil {
			return prev, fmt.Errorf("analyze statement: %w", err)
		}
		l.analyzed = l.Executions
	}
	return l, nil
}

// errOutOfOrder: an appended execution is not numbered above the one before.
var errOutOfOrder = errors.New("executions out of sequence order")

// copySource adapts a pulled statement to pgx.CopyFromSource. With after
// set (AppendStatement), it yields executions in increasing sequence order
// above it only, and stops with errOutOfOrder at one that is not.
type copySource struct {
	next  func() (Execution, error, bool)
	after int64
	cur   Execution
	err   error
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
	if s.after > 0 {
		if e.Seq <= s.after {
			s.err = fmt.Errorf("%w: %d after %d", errOutOfOrder, e.Seq, s.after)
			return false
		}
		s.after = e.Seq
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
