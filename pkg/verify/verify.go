// Package verify is the invariant checker of the Finance Service. It compares
// the ledger in PostgreSQL with itself and with the processor's statement of
// what it executed, and reports every violation with a count and a few
// examples. It is the one checker of these invariants: `financectl verify`,
// the reconciler (pkg/reconcile, for the statement's mismatches), the chaos
// run's check (services/devstack) and the load test's pipeline checker
// (loadtest/internal/check, over the executions of its run) all call it.
//
// Every check is one set-based SQL statement (GROUP BY, anti-joins), never a
// per-user loop, so it runs on millions of users; the statement is streamed
// into a temporary table with COPY and compared in SQL as well. The ledger
// checks run in one REPEATABLE READ transaction, so they all see the same
// snapshot even while traffic flows.
package verify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Kind names one invariant.
type Kind string

// The ledger's own invariants.
const (
	// StuckNonfinal: not final (accepted, processing or unknown) longer than
	// Config.StuckAfter after its acceptance. It is the liveness check: every
	// payment must reach succeeded or failed within the bound, whichever path
	// (the pipeline, the reconciler) gets it there.
	StuckNonfinal Kind = "stuck_nonfinal"
	// StuckInFlight: accepted or processing for longer than Config.InFlightBound.
	StuckInFlight Kind = "stuck_in_flight"
	// UnknownTooLong: unknown for longer than Config.UnknownBound.
	UnknownTooLong Kind = "unknown_too_long"
	// BalanceMismatch: a wallet's balance differs from the sum of its entries.
	BalanceMismatch Kind = "balance_mismatch"
	// HeldMismatch: a wallet's held amount differs from the sum of its open holds.
	HeldMismatch Kind = "held_mismatch"
	// HoldMismatch: a payment holds something else than it should: |amount|
	// for an open debit, 0 for an open credit or a final payment.
	HoldMismatch Kind = "hold_mismatch"
	// NegativeAvailable: a wallet's balance − held is below zero (an overdraft).
	NegativeAvailable Kind = "negative_available"
	// EntryMismatch: a settled entry whose payment is not succeeded, or
	// names another user, merchant or amount.
	EntryMismatch Kind = "entry_mismatch"
	// SucceededWithoutEntry: a succeeded payment with no settled entry.
	SucceededWithoutEntry Kind = "succeeded_without_entry"
	// OutcomeConflict: an outcome contradicted the payment's final status
	// (succeeded after failed, failed after succeeded) and no operator has
	// resolved it yet. The status consumer records it in outcome_conflicts
	// and dead-letters the outcome; the ledger still shows the first status,
	// which may be the wrong one.
	OutcomeConflict Kind = "outcome_conflict"
)

// The invariants between the ledger and the processor's statement.
const (
	// PaidTwice: the processor executed one payment more than once.
	PaidTwice Kind = "paid_twice"
	// ExecutedButFailed: the processor executed a payment that is failed here
	// (paid there, failed here).
	ExecutedButFailed Kind = "executed_but_failed"
	// ExecutedNotSucceeded: executed there, but still not final here after
	// Config.ExecutionBound.
	ExecutedNotSucceeded Kind = "executed_not_succeeded"
	// AmountMismatch: the processor executed a payment for another amount or user.
	AmountMismatch Kind = "amount_mismatch"
	// ExecutionWithoutPayment: the processor executed under a key
	// "payment-<uid>" whose uid no payment here holds: a payment this
	// database never accepted, or lost (a restore from a backup);
	// financectl recover re-creates it.
	ExecutionWithoutPayment Kind = "execution_without_payment"
	// SucceededNotExecuted: succeeded here (from the api) but not executed there.
	// For executions without a key (as-is API) it is counted per user and
	// amount: more succeeded payments than executions.
	SucceededNotExecuted Kind = "succeeded_not_executed"
	// UnmatchedExecutions: as-is executions (no key) that outnumber the
	// payments of the same user and amount that succeeded here or are still
	// open: paid twice, or paid there and failed here.
	UnmatchedExecutions Kind = "unmatched_executions"
)

// LedgerKinds are the invariants checked without a statement, in report order.
var LedgerKinds = []Kind{StuckNonfinal, StuckInFlight, UnknownTooLong, BalanceMismatch, HeldMismatch, HoldMismatch,
	NegativeAvailable, EntryMismatch, SucceededWithoutEntry, OutcomeConflict}

// StatementKinds are the invariants checked against the statement, in report order.
var StatementKinds = []Kind{PaidTwice, ExecutedButFailed, ExecutedNotSucceeded, AmountMismatch,
	ExecutionWithoutPayment, SucceededNotExecuted, UnmatchedExecutions}

// Config tunes the checker.
type Config struct {
	// StuckAfter is how long after its acceptance a payment may stay not
	// final (StuckNonfinal); 0 disables that check.
	StuckAfter time.Duration
	// InFlightBound is how long a payment may stay accepted or processing.
	InFlightBound time.Duration
	// UnknownBound is how long a payment may stay unknown (from its creation).
	UnknownBound time.Duration
	// ExecutionBound is how long an executed payment may take to become
	// final here.
	ExecutionBound time.Duration
	// MaxExamples bounds the examples kept per kind.
	MaxExamples int
	// StatementFrom, when not zero, is when the statement begins: it holds
	// only what the processor executed from then on (the load generator
	// passes the executions of its run), so a payment created before it is
	// not expected in it (SucceededNotExecuted). Every execution in it must
	// still be accounted for, whenever its payment was created.
	StatementFrom time.Time
}

// DefaultConfig returns the bounds financectl verify uses by default.
func DefaultConfig() Config {
	return Config{
		StuckAfter:     2 * time.Minute,
		InFlightBound:  5 * time.Minute,
		UnknownBound:   time.Hour,
		ExecutionBound: 5 * time.Minute,
		MaxExamples:    10,
	}
}

// Example is one violation, for a human to follow up.
type Example struct {
	PaymentID int64  `json:"payment_id,omitempty"`
	UserID    int64  `json:"user_id,omitempty"`
	Detail    string `json:"detail"`
}

// Finding is the result of one invariant.
type Finding struct {
	Kind Kind `json:"kind"`
	// Count is how many payments, wallets or executions violate it.
	Count    int64     `json:"count"`
	Examples []Example `json:"examples,omitempty"`
}

// Report is the checker's result.
type Report struct {
	CheckedAt time.Time        `json:"checked_at"`
	Wallets   int64            `json:"wallets"`
	Payments  int64            `json:"payments"`
	Entries   int64            `json:"entries"`
	ByStatus  map[string]int64 `json:"by_status"`
	// Statement is false when no processor statement was compared.
	Statement  bool  `json:"statement"`
	Executions int64 `json:"executions"`
	// Findings has one entry per checked invariant, violated or not.
	Findings []Finding `json:"findings"`
	// LastRestore is the latest database restore recorded by financectl
	// after-restore, if any: executions of the processor lost in it show as
	// execution_without_payment until financectl recover re-creates them.
	LastRestore *Restore `json:"last_restore,omitempty"`
	Config      struct {
		StuckAfter     string `json:"stuck_after"`
		InFlightBound  string `json:"in_flight_bound"`
		UnknownBound   string `json:"unknown_bound"`
		ExecutionBound string `json:"execution_bound"`
	} `json:"config"`
}

// Restore is a database restore as recorded in the restores table.
type Restore struct {
	ID         int64     `json:"id"`
	RecordedAt time.Time `json:"recorded_at"`
	Actor      string    `json:"actor"`
}

// Violations is the total count over every invariant.
func (r Report) Violations() int64 {
	var n int64
	for _, f := range r.Findings {
		n += f.Count
	}
	return n
}

// OK reports whether no invariant is violated.
func (r Report) OK() bool { return r.Violations() == 0 }

// Count returns the count of kind k (0 when not checked).
func (r Report) Count(k Kind) int64 {
	for _, f := range r.Findings {
		if f.Kind == k {
			return f.Count
		}
	}
	return 0
}

// Finding returns the finding of kind k, if it was checked.
func (r Report) Finding(k Kind) (Finding, bool) {
	for _, f := range r.Findings {
		if f.Kind == k {
			return f, true
		}
	}
	return Finding{}, false
}

// WriteText writes the report for a human.
func (r Report) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "invariant check at %s\n", r.CheckedAt.UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "  wallets %d, payments %d (%s), entries %d\n", r.Wallets, r.Payments, statusLine(r.ByStatus), r.Entries)
	if r.Statement {
		fmt.Fprintf(&b, "  processor statement: %d executions\n", r.Executions)
	} else {
		fmt.Fprintf(&b, "  processor statement: not compared\n")
	}
	if r.LastRestore != nil {
		fmt.Fprintf(&b, "  last database restore: recorded %s by %s (restores row %d)\n",
			r.LastRestore.RecordedAt.UTC().Format(time.RFC3339), r.LastRestore.Actor, r.LastRestore.ID)
	}
	stuck := r.Config.StuckAfter
	if stuck == "" || stuck == "0s" {
		stuck = "off"
	}
	fmt.Fprintf(&b, "  bounds: stuck %s, in flight %s, unknown %s, execution %s\n\n", stuck, r.Config.InFlightBound, r.Config.UnknownBound, r.Config.ExecutionBound)
	WriteFindings(&b, r.Findings)
	if r.OK() {
		fmt.Fprintf(&b, "\nOK: no violation\n")
	} else {
		fmt.Fprintf(&b, "\nFAILED: %d violations\n", r.Violations())
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteFindings writes one line per finding and its examples.
func WriteFindings(w io.Writer, fs []Finding) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, f := range fs {
		mark := "ok"
		if f.Count > 0 {
			mark = "VIOLATED"
		}
		fmt.Fprintf(tw, "  %s\t%d\t%s\n", f.Kind, f.Count, mark)
	}
	tw.Flush()
	for _, f := range fs {
		for _, e := range f.Examples {
			var who []string
			if e.PaymentID != 0 {
				who = append(who, fmt.Sprintf("payment %d", e.PaymentID))
			}
			if e.UserID != 0 {
				who = append(who, fmt.Sprintf("user %d", e.UserID))
			}
			fmt.Fprintf(w, "    %s: %s: %s\n", f.Kind, strings.Join(who, ", "), e.Detail)
		}
	}
}

func statusLine(m map[string]int64) string {
	var parts []string
	for _, s := range []string{"accepted", "processing", "unknown", "succeeded", "failed"} {
		parts = append(parts, fmt.Sprintf("%s %d", s, m[s]))
	}
	return strings.Join(parts, ", ")
}

// Checker checks the ledger behind a pool, and the processor's statement
// when it has one.
type Checker struct {
	db   *pgxpool.Pool
	stmt Statement
	cfg  Config
}

// New returns a checker of db. stmt may be nil: the statement invariants are
// then not checked.
func New(db *pgxpool.Pool, stmt Statement, cfg Config) *Checker {
	if cfg.MaxExamples <= 0 {
		cfg.MaxExamples = DefaultConfig().MaxExamples
	}
	return &Checker{db: db, stmt: stmt, cfg: cfg}
}

// Check runs every invariant and returns the report. An error means the
// check could not run; violations are in the report.
func (c *Checker) Check(ctx context.Context) (Report, error) {
	conn, err := c.db.Acquire(ctx)
	if err != nil {
		return Report{}, fmt.Errorf("acquire connection: %w", err)
	}
	defer conn.Release()
	// Temporary tables live with the session; drop ours before the
	// connection goes back to the pool.
	defer conn.Exec(context.WithoutCancel(ctx), `DROP TABLE IF EXISTS `+StatementTable) //nolint:errcheck // best effort

	var loaded Loaded
	if c.stmt != nil {
		// Read the statement before the snapshot: whatever the ledger shows
		// as executed before loaded.At must be in it.
		if loaded, err = LoadStatement(ctx, conn.Conn(), c.stmt); err != nil {
			return Report{}, err
		}
	}
	rep := Report{ByStatus: map[string]int64{}, Statement: loaded.Present, Executions: loaded.Executions}
	rep.Config.StuckAfter = c.cfg.StuckAfter.String()
	rep.Config.InFlightBound = c.cfg.InFlightBound.String()
	rep.Config.UnknownBound = c.cfg.UnknownBound.String()
	rep.Config.ExecutionBound = c.cfg.ExecutionBound.String()

	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return Report{}, fmt.Errorf("begin snapshot: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // read only

	if err := tx.QueryRow(ctx, `SELECT now(), (SELECT count(*) FROM wallets), (SELECT count(*) FROM entries)`).
		Scan(&rep.CheckedAt, &rep.Wallets, &rep.Entries); err != nil {
		return Report{}, fmt.Errorf("count wallets and entries: %w", err)
	}
	rows, err := tx.Query(ctx, `SELECT status, count(*) FROM payments GROUP BY status`)
	if err != nil {
		return Report{}, fmt.Errorf("count payments: %w", err)
	}
	var status string
	var n int64
	if _, err := pgx.ForEachRow(rows, []any{&status, &n}, func() error {
		rep.ByStatus[status] = n
		rep.Payments += n
		return nil
	}); err != nil {
		return Report{}, fmt.Errorf("count payments: %w", err)
	}

	var last Restore
	err = tx.QueryRow(ctx, `SELECT id, recorded_at, actor FROM restores ORDER BY id DESC LIMIT 1`).
		Scan(&last.ID, &last.RecordedAt, &last.Actor)
	switch {
	case err == nil:
		rep.LastRestore = &last
	case !errors.Is(err, pgx.ErrNoRows):
		return Report{}, fmt.Errorf("read last restore: %w", err)
	}

	var kinds []Kind
	for _, k := range LedgerKinds {
		if k == StuckNonfinal && c.cfg.StuckAfter <= 0 {
			continue // disabled
		}
		kinds = append(kinds, k)
	}
	if loaded.Present {
		kinds = append(kinds, StatementKinds...)
	}
	if rep.Findings, err = c.run(ctx, tx, kinds, loaded); err != nil {
		return Report{}, err
	}
	return rep, nil
}

// CheckStatement runs the statement invariants on conn, where LoadStatement
// has loaded the statement. The reconciler uses it to report mismatches.
func (c *Checker) CheckStatement(ctx context.Context, conn *pgx.Conn, loaded Loaded) ([]Finding, error) {
	if !loaded.Present {
		return nil, nil
	}
	return c.run(ctx, conn, StatementKinds, loaded)
}

// querier is a connection or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func (c *Checker) run(ctx context.Context, q querier, kinds []Kind, loaded Loaded) ([]Finding, error) {
	out := make([]Finding, 0, len(kinds))
	for _, k := range kinds {
		sql, args := c.query(k, loaded)
		f, err := collect(ctx, q, k, sql, append(args, c.cfg.MaxExamples)...)
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, nil
}

// collect runs one check. Every check's SQL selects (payment_id, user_id,
// detail, total) where total is the number of violations (a window
// aggregate, computed before LIMIT), and takes the example limit as its
// last parameter.
func collect(ctx context.Context, q querier, k Kind, sql string, args ...any) (Finding, error) {
	f := Finding{Kind: k}
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return f, fmt.Errorf("check %s: %w", k, err)
	}
	var (
		e     Example
		total int64
	)
	if _, err := pgx.ForEachRow(rows, []any{&e.PaymentID, &e.UserID, &e.Detail, &total}, func() error {
		f.Count = total
		f.Examples = append(f.Examples, e)
		return nil
	}); err != nil {
		return f, fmt.Errorf("check %s: %w", k, err)
	}
	return f, nil
}

// micros converts a bound for SQL: `now() - $n * interval '1 microsecond'`.
func micros(d time.Duration) int64 { return d.Microseconds() }

const open = `('accepted', 'processing', 'unknown')`

// query returns a check's SQL and its arguments, without the example limit.
func (c *Checker) query(k Kind, loaded Loaded) (string, []any) {
	switch k {
	// The open payments are read in a MATERIALIZED CTE so that the planner
	// takes them from the partial index payments_open_idx: with ORDER BY id
	// over the whole table it walks the primary key instead, every row of
	// the table (0.45 s on a million payments, against 10 ms).
	case StuckNonfinal:
		return `
			WITH o AS MATERIALIZED (
				SELECT id, user_id, status, created_at, updated_at FROM payments
				WHERE status NOT IN ('succeeded', 'failed') AND created_at < now() - $1 * interval '1 microsecond')
			SELECT id, user_id, format('%s since %s, accepted %s ago', status, updated_at, date_trunc('second', now() - created_at)),
			       count(*) OVER ()
			FROM o
			ORDER BY id LIMIT $2`, []any{micros(c.cfg.StuckAfter)}
	case StuckInFlight:
		return `
			WITH o AS MATERIALIZED (
				SELECT id, user_id, status, created_at, updated_at FROM payments
				WHERE status IN ('accepted', 'processing') AND created_at < now() - $1 * interval '1 microsecond')
			SELECT id, user_id, format('%s since %s (created %s)', status, updated_at, created_at), count(*) OVER ()
			FROM o
			ORDER BY id LIMIT $2`, []any{micros(c.cfg.InFlightBound)}
	case UnknownTooLong:
		return `
			WITH o AS MATERIALIZED (
				SELECT id, user_id, created_at, updated_at, failure_reason FROM payments
				WHERE status = 'unknown' AND created_at < now() - $1 * interval '1 microsecond')
			SELECT id, user_id, format('unknown since %s (created %s): %s', updated_at, created_at, failure_reason), count(*) OVER ()
			FROM o
			ORDER BY id LIMIT $2`, []any{micros(c.cfg.UnknownBound)}
	case BalanceMismatch:
		return `
			SELECT 0::bigint, w.user_id, format('balance %s, settled entries sum to %s', w.balance, coalesce(e.total, 0)),
			       count(*) OVER ()
			FROM wallets w
			LEFT JOIN (SELECT user_id, sum(amount) AS total FROM entries GROUP BY user_id) e USING (user_id)
			WHERE w.balance <> coalesce(e.total, 0)
			ORDER BY w.user_id LIMIT $1`, nil
	case HeldMismatch:
		return `
			SELECT 0::bigint, w.user_id, format('held %s, open holds sum to %s', w.held, coalesce(h.total, 0)),
			       count(*) OVER ()
			FROM wallets w
			LEFT JOIN (SELECT user_id, sum(hold) AS total FROM payments
			           WHERE status IN ` + open + ` GROUP BY user_id) h USING (user_id)
			WHERE w.held <> coalesce(h.total, 0)
			ORDER BY w.user_id LIMIT $1`, nil
	case HoldMismatch:
		return `
			SELECT id, user_id, format('%s payment of %s holds %s, want %s', status, amount, hold, want), count(*) OVER ()
			FROM (SELECT *, CASE WHEN status IN ` + open + ` THEN greatest(-amount, 0) ELSE 0 END AS want FROM payments) p
			WHERE hold <> want
			ORDER BY id LIMIT $1`, nil
	case NegativeAvailable:
		return `
			SELECT 0::bigint, user_id, format('balance %s − held %s = %s', balance, held, balance - held), count(*) OVER ()
			FROM wallets
			WHERE balance - held < 0
			ORDER BY user_id LIMIT $1`, nil
	case EntryMismatch:
		return `
			SELECT e.payment_id, e.user_id,
			       CASE WHEN p.status <> 'succeeded' THEN format('entry %s: its payment is %s', e.id, p.status)
			            ELSE format('entry %s (user %s, merchant %s, amount %s) differs from its payment (user %s, merchant %s, amount %s)',
			                        e.id, e.user_id, e.merchant_id, e.amount, p.user_id, p.merchant_id, p.amount) END,
			       count(*) OVER ()
			FROM entries e JOIN payments p ON p.id = e.payment_id
			WHERE p.status <> 'succeeded' OR p.user_id <> e.user_id OR p.merchant_id <> e.merchant_id OR p.amount <> e.amount
			ORDER BY e.id LIMIT $1`, nil
	case SucceededWithoutEntry:
		return `
			SELECT p.id, p.user_id, format('succeeded (%s) with no settled entry', p.source), count(*) OVER ()
			FROM payments p
			WHERE p.status = 'succeeded' AND NOT EXISTS (SELECT 1 FROM entries e WHERE e.payment_id = p.id)
			ORDER BY p.id LIMIT $1`, nil
	case OutcomeConflict:
		return `
			SELECT c.payment_id, c.user_id,
			       format('%s here, outcome %s (%s) seen by %s at %s; conflict %s unresolved',
			              c.status, c.outcome, coalesce(nullif(c.reason, ''), 'no reason'), c.actor, c.detected_at, c.id),
			       count(*) OVER ()
			FROM outcome_conflicts c
			WHERE c.resolved_at IS NULL
			ORDER BY c.id LIMIT $1`, nil

	case PaidTwice:
		return `
			SELECT coalesce(p.id, 0), min(x.user_id),
			       format('key %s executed %s times: %s', min(x.idempotency_key), count(*), string_agg(x.ref, ', ' ORDER BY x.seq)),
			       count(*) OVER ()
			FROM ` + StatementTable + ` x LEFT JOIN payments p ON p.uid = x.payment_uid
			WHERE x.payment_uid IS NOT NULL
			GROUP BY x.payment_uid, p.id HAVING count(*) > 1
			ORDER BY min(x.seq) LIMIT $1`, nil
	case ExecutedButFailed:
		return `
			SELECT p.id, p.user_id, format('executed by the processor as %s, failed here: %s', min(x.ref), p.failure_reason),
			       count(*) OVER ()
			FROM payments p JOIN ` + StatementTable + ` x ON x.payment_uid = p.uid
			WHERE p.status = 'failed'
			GROUP BY p.id
			ORDER BY p.id LIMIT $1`, nil
	case ExecutedNotSucceeded:
		return `
			SELECT p.id, p.user_id, format('executed by the processor as %s at %s, still %s here', min(x.ref), min(x.executed_at), p.status),
			       count(*) OVER ()
			FROM payments p JOIN ` + StatementTable + ` x ON x.payment_uid = p.uid
			WHERE p.status IN ` + open + ` AND p.created_at < now() - $1 * interval '1 microsecond'
			GROUP BY p.id
			ORDER BY p.id LIMIT $2`, []any{micros(c.cfg.ExecutionBound)}
	case AmountMismatch:
		// The join is materialized first so that the statement drives it
		// (one index lookup of payments per execution): planned together
		// with ORDER BY p.id LIMIT, PostgreSQL walked every payment in id
		// order looking for the first mismatches, all 20,000,000 of them
		// when there were none (docs/reads.md, "The reconciler's scans").
		return `
			WITH m AS MATERIALIZED (
				SELECT p.id, p.user_id, p.amount, x.ref, x.seq, x.user_id AS x_user_id, x.amount AS x_amount
				FROM ` + StatementTable + ` x JOIN payments p ON p.uid = x.payment_uid
				WHERE x.amount <> p.amount OR x.user_id <> p.user_id
			)
			SELECT m.id, m.user_id, format('executed as %s for user %s amount %s; the payment is user %s amount %s',
			                               m.ref, m.x_user_id, m.x_amount, m.user_id, m.amount),
			       count(*) OVER ()
			FROM m
			ORDER BY m.id, m.seq LIMIT $1`, nil
	case ExecutionWithoutPayment:
		return `
			SELECT 0::bigint, x.user_id,
			       format('executed as %s at %s (key %s, amount %s), no payment with that uid here', x.ref, x.executed_at, x.idempotency_key, x.amount),
			       count(*) OVER ()
			FROM ` + StatementTable + ` x
			WHERE x.payment_uid IS NOT NULL AND NOT EXISTS (SELECT 1 FROM payments p WHERE p.uid = x.payment_uid)
			ORDER BY x.seq LIMIT $1`, nil
	case SucceededNotExecuted:
		// Payments with a keyed execution are accounted for above. The rest
		// are compared with the as-is executions per (user, amount): every
		// succeeded payment, or, with loaded.SucceededAfter, those of the
		// groups where a payment succeeded since (by the transitions'
		// primary key, not a scan of every payment).
		payments, args := `payments p`, []any{loaded.At, c.cfg.StatementFrom}
		if loaded.SucceededAfter > 0 {
			payments = `(
					SELECT DISTINCT s.user_id, s.amount
					FROM payment_transitions t JOIN payments s ON s.id = t.payment_id
					WHERE t.id > $3 AND t.to_status = 'succeeded'
				) g JOIN payments p ON p.user_id = g.user_id AND p.amount = g.amount`
			args = append(args, loaded.SucceededAfter)
		}
		return `
			WITH here AS (
				SELECT p.user_id, p.amount, count(*) AS n, min(p.id) AS first_id
				FROM ` + payments + `
				WHERE p.status = 'succeeded' AND p.source <> 'seed' AND p.updated_at < $1 AND p.created_at >= $2
				  AND NOT EXISTS (SELECT 1 FROM ` + StatementTable + ` x WHERE x.payment_uid = p.uid)
				GROUP BY p.user_id, p.amount
			), there AS (
				SELECT user_id, amount, count(*) AS n FROM ` + StatementTable + `
				WHERE payment_uid IS NULL GROUP BY user_id, amount
			)
			SELECT CASE WHEN h.n = 1 THEN h.first_id ELSE 0 END, h.user_id,
			       format('%s payments of %s succeeded here (first %s), %s executions without a key there',
			              h.n, h.amount, h.first_id, coalesce(t.n, 0)),
			       sum(h.n - coalesce(t.n, 0)) OVER ()::bigint
			FROM here h LEFT JOIN there t USING (user_id, amount)
			WHERE h.n > coalesce(t.n, 0)
			ORDER BY h.user_id, h.amount LIMIT $` + strconv.Itoa(len(args)+1), args
	case UnmatchedExecutions:
		return `
			WITH there AS (
				SELECT user_id, amount, count(*) AS n, string_agg(ref, ', ' ORDER BY seq) AS refs
				FROM ` + StatementTable + `
				WHERE payment_uid IS NULL GROUP BY user_id, amount
			), here AS (
				SELECT p.user_id, p.amount,
				       count(*) FILTER (WHERE p.status = 'succeeded') AS succeeded,
				       count(*) FILTER (WHERE p.status IN ` + open + `) AS pending
				FROM payments p
				WHERE p.source <> 'seed' AND (p.user_id, p.amount) IN (SELECT user_id, amount FROM there)
				  AND NOT EXISTS (SELECT 1 FROM ` + StatementTable + ` x WHERE x.payment_uid = p.uid)
				GROUP BY p.user_id, p.amount
			)
			SELECT 0::bigint, t.user_id,
			       format('%s executions of %s without a key there (%s), %s succeeded and %s open here',
			              t.n, t.amount, t.refs, coalesce(h.succeeded, 0), coalesce(h.pending, 0)),
			       sum(t.n - coalesce(h.succeeded, 0) - coalesce(h.pending, 0)) OVER ()::bigint
			FROM there t LEFT JOIN here h USING (user_id, amount)
			WHERE t.n > coalesce(h.succeeded, 0) + coalesce(h.pending, 0)
			ORDER BY t.user_id, t.amount LIMIT $1`, nil
	}
	panic("verify: unknown kind " + string(k))
}
