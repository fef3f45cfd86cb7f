// Package reconcile compares our payments with the processor's record of
// what it executed. It resolves payments left unknown (the dispatcher could
// not learn their outcome), and payments stuck accepted or processing (their
// outcome was lost, e.g. applied to a database since restored from a
// backup), from that record, never by guessing, and reports every mismatch
// between the two sides.
//
// Executions are tied to payments by the idempotency key the dispatcher
// sends, "payment-<uid>" (payment.ProcessorKey): uids never repeat, payment
// ids do after a restore.
//
// Evidence for an unknown payment, strongest first:
//
//  1. The statement has executions under the payment's key: it was
//     executed → succeeded (if user and amount agree).
//  2. The proposed API's lookup GET /v2/payments/payment-<uid>: succeeded →
//     succeeded; declined → failed; 404 → failed "not executed by
//     processor", but only once the processor can no longer execute it
//     (Config.SafetyBound after the payment became unknown) and while the
//     processor still keeps its key (Config.KeyRetention).
//  3. The as-is statement (no keys): executions of the same user and amount
//     within the payment's time window. Exactly one, claimed by no other
//     payment → succeeded; none once the window has closed → failed;
//     anything else is ambiguous and stays unknown, reported.
//
// A payment accepted or processing for longer than Config.StuckAfter is
// resolved by the keyed evidence only (1 and 2): executed → succeeded,
// declined → failed. A 404 proves nothing for it: its request may still be
// queued in Kafka, and the processor would then execute it. It is left, and
// reported.
//
// A resolution is written in one PostgreSQL transaction through
// ledger.Apply (the status consumer's rules), audited in
// payment_transitions with actor "reconciler" and the evidence as reason.
//
// Recover re-creates the payments of executions whose uid the database does
// not hold: what a restore from a backup loses.
package reconcile

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/finsvc/finance/pkg/ledger"
	"github.com/finsvc/finance/pkg/payment"
	"github.com/finsvc/finance/pkg/postgres"
	"github.com/finsvc/finance/pkg/verify"
)

// Actor is the payment_transitions.actor of every resolution.
const Actor = "reconciler"

// Config tunes the reconciler.
type Config struct {
	// SafetyBound is how long after a payment became unknown the processor
	// may still execute it: the processor's maximum latency plus the
	// dispatcher's call timeout, with a margin. Absence of an execution
	// proves nothing before it has passed.
	SafetyBound time.Duration
	// KeyRetention is how long the processor keeps an idempotency key: a
	// lookup 404 for an older payment proves nothing.
	KeyRetention time.Duration
	// ClockSkew widens every time window, for the processor's clock.
	ClockSkew time.Duration
	// StuckAfter is how long after its acceptance a payment may stay
	// accepted or processing before the reconciler asks the processor about
	// it; 0 leaves such payments to the pipeline.
	StuckAfter time.Duration
	// StuckLookups bounds the lookups of stuck payments per pass (oldest
	// first), so that a long backlog does not turn every pass into a lookup
	// of every queued payment; 0 asks the statement only.
	StuckLookups int
	// DryRun decides and reports without changing anything.
	DryRun bool
	// PaymentID, when set, limits the pass to that one payment (the
	// operator console's "resolve from processor"); 0 examines them all.
	PaymentID int64
	// BatchSize is how many unknown payments are read per query.
	BatchSize int
	// Verify tunes the mismatch report (its statement invariants).
	Verify verify.Config
	// Emit, when set, is called inside each resolution's transaction with
	// its event, e.g. to write it to the outbox for payments.events.
	Emit func(ctx context.Context, tx pgx.Tx, ev ledger.Event) error
	// KeepStatement keeps the loaded statement between passes, on a
	// connection of its own, and reads only what the processor executed
	// since the last pass (a statement that can do so: verify.
	// IncrementalStatement). Without it every pass reads and loads the whole
	// statement: a pass then costs as much as the processor's history.
	// Close releases the connection. A kept statement also makes the
	// check succeeded_not_executed incremental (succeeded.go).
	KeepStatement bool
	// CommitBound is how long a transaction that records a payment's
	// transition may take from its insert to its commit: a transition
	// numbered before some instant is visible CommitBound after it. The
	// incremental succeeded_not_executed rests on it (succeeded.go).
	CommitBound time.Duration
}

// DefaultConfig returns the defaults of financectl reconcile.
func DefaultConfig() Config {
	return Config{
		SafetyBound:  time.Minute,
		KeyRetention: payment.KeyRetention,
		ClockSkew:    5 * time.Second,
		StuckAfter:   2 * time.Minute,
		StuckLookups: 1000,
		BatchSize:    500,
		Verify:       verify.DefaultConfig(),
		CommitBound:  2 * time.Minute,
	}
}

// Resolution is what the reconciler decided for one unknown or stuck payment.
type Resolution struct {
	PaymentID  int64     `json:"payment_id"`
	PaymentUID uuid.UUID `json:"payment_uid"`
	UserID     int64     `json:"user_id"`
	Amount     int64     `json:"amount"`
	// From is the payment's status when examined: unknown, or accepted or
	// processing for a stuck payment.
	From payment.Status `json:"from"`
	// To is succeeded or failed; empty when the payment is left as it is.
	To payment.Status `json:"to,omitempty"`
	// Why is the evidence, or why it stays unknown. It is the audit reason.
	Why string `json:"why"`
	// Applied is true when the resolution was written (never in a dry run).
	Applied bool `json:"applied"`
}

// Report is one reconciliation pass.
type Report struct {
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`
	DryRun     bool      `json:"dry_run"`
	// Statement is false when no processor statement was read.
	Statement  bool  `json:"statement"`
	Executions int64 `json:"executions"`
	Lookup     bool  `json:"lookup"`
	// Unknown is how many unknown payments were examined; Stuck how many
	// accepted or processing for longer than StuckAfter.
	Unknown    int64  `json:"unknown"`
	Stuck      int64  `json:"stuck"`
	StuckAfter string `json:"stuck_after"`
	Succeeded  int64  `json:"succeeded"`
	Failed     int64  `json:"failed"`
	// Left are left as they were: too recent, ambiguous, not found (a stuck
	// payment may still be queued), or the processor could not be asked.
	// Errors counts the lookups that failed among them.
	Left   int64 `json:"left"`
	Errors int64 `json:"errors"`
	// Resolved lists the resolutions (applied, or proposed in a dry run);
	// Unresolved the payments left, each with why.
	Resolved   []Resolution `json:"resolved"`
	Unresolved []Resolution `json:"unresolved"`
	// WithoutPayment lists the statement's executions under a key
	// "payment-<uid>" whose uid no payment here holds (the first 1000, in
	// execution order; WithoutPaymentCount counts them all): what a restore
	// from a backup loses. financectl recover re-creates them.
	WithoutPayment      []LostExecution `json:"executions_without_payment"`
	WithoutPaymentCount int64           `json:"executions_without_payment_count"`
	// Mismatches are the statement invariants of package verify after the
	// pass: paid twice, paid there but failed here, amount differences, ...
	Mismatches []verify.Finding `json:"mismatches,omitempty"`
	// SucceededAfter is where succeeded_not_executed started: the groups
	// of payments that succeeded in a transition numbered above it; 0
	// when it compared every succeeded payment (verify.Loaded).
	SucceededAfter int64 `json:"succeeded_checked_after"`
}

// MismatchCount is the total count over Mismatches.
func (r Report) MismatchCount() int64 {
	var n int64
	for _, f := range r.Mismatches {
		n += f.Count
	}
	return n
}

// maxListed bounds Resolved and Unresolved; the counts go on.
const maxListed = 1000

// WriteText writes the report for a human.
func (r Report) WriteText(w io.Writer) error {
	var b strings.Builder
	mode := ""
	if r.DryRun {
		mode = " (dry run: nothing changed)"
	}
	fmt.Fprintf(&b, "reconciliation at %s%s\n", r.StartedAt.UTC().Format(time.RFC3339), mode)
	src := []string{}
	if r.Statement {
		src = append(src, fmt.Sprintf("statement with %d executions", r.Executions))
	}
	if r.Lookup {
		src = append(src, "lookup by idempotency key")
	}
	if len(src) == 0 {
		src = append(src, "none")
	}
	fmt.Fprintf(&b, "  evidence: %s\n", strings.Join(src, ", "))
	stuck := fmt.Sprintf("accepted or processing for over %s: %d", r.StuckAfter, r.Stuck)
	if r.StuckAfter == "" || r.StuckAfter == "0s" {
		stuck = "stuck accepted or processing: not examined"
	}
	fmt.Fprintf(&b, "  unknown payments: %d, %s → succeeded %d, failed %d, left %d (lookup errors %d)\n",
		r.Unknown, stuck, r.Succeeded, r.Failed, r.Left, r.Errors)
	for _, x := range r.Resolved {
		verb := "resolved"
		if !x.Applied {
			verb = "would resolve"
		}
		fmt.Fprintf(&b, "    payment %d (user %d, amount %d): %s %s → %s: %s\n", x.PaymentID, x.UserID, x.Amount, verb, x.From, x.To, x.Why)
	}
	for _, x := range r.Unresolved {
		fmt.Fprintf(&b, "    payment %d (user %d, amount %d): left %s: %s\n", x.PaymentID, x.UserID, x.Amount, x.From, x.Why)
	}
	if r.Statement {
		fmt.Fprintf(&b, "  executions without payment (uid not held here, e.g. lost in a restore): %d\n", r.WithoutPaymentCount)
		WriteLostExecutions(&b, r.WithoutPayment)
		if n := r.WithoutPaymentCount - int64(len(r.WithoutPayment)); n > 0 {
			fmt.Fprintf(&b, "    ... and %d more\n", n)
		}
	}
	if r.Statement {
		fmt.Fprintf(&b, "  mismatches with the processor: %d\n", r.MismatchCount())
		verify.WriteFindings(&b, r.Mismatches)
	} else {
		fmt.Fprintf(&b, "  mismatches with the processor: not compared (no statement)\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// Reconciler resolves unknown payments and reports mismatches.
type Reconciler struct {
	db     *pgxpool.Pool
	stmt   verify.Statement
	lookup Lookup
	cfg    Config

	// mu serializes passes. With Config.KeepStatement, kept is the
	// connection that holds the statement loaded by the last pass (nil
	// before the first pass and after a failed one), and loaded describes it.
	mu     sync.Mutex
	kept   *pgx.Conn
	loaded verify.Loaded
	// succeeded is how far succeeded_not_executed has been checked, with
	// a kept statement (succeeded.go).
	succeeded succeededWatermark
}

// New returns a reconciler of db. stmt (the processor's statement) and
// lookup (the proposed API) may each be nil; with neither, nothing can be
// resolved.
func New(db *pgxpool.Pool, stmt verify.Statement, lookup Lookup, cfg Config) *Reconciler {
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = DefaultConfig().BatchSize
	}
	return &Reconciler{db: db, stmt: stmt, lookup: lookup, cfg: cfg}
}

// candidate is an unknown or stuck payment with the statement's evidence
// about it.
type candidate struct {
	ID             int64
	UID            uuid.UUID
	UserID, Amount int64
	Status         payment.Status
	CreatedAt      time.Time
	UpdatedAt      time.Time // when it became unknown, for an unknown payment
	// WindowClosed: the processor can no longer execute it (SafetyBound
	// has passed since it became unknown).
	WindowClosed bool
	// StatementCovers: the statement was read after the window closed.
	StatementCovers bool
	// KeyAlive: the processor still keeps its idempotency key.
	KeyAlive bool
	// Keyed executions under "payment-<uid>"; KeyedOff of them name
	// another user or amount.
	Keyed, KeyedOff int64
	KeyedRefs       string
	// AsIs executions without a key of the same user and amount in the
	// payment's window; AsIsShared when one of them also falls in the
	// window of another payment of the same user and amount.
	AsIs       int64
	AsIsRef    string
	AsIsShared bool
}

// The candidates are the unknown payments and, when $7, the accepted or
// processing ones created more than $8 ago; only payment $9 unless it is 0.
// The window of a payment q is
// [created_at − skew, updated_at + safety + skew]: an execution for it
// cannot be earlier than its acceptance, nor later than the safety bound
// after its last change. Stuck payments use the keyed evidence only.
//
// The open payments are read in a MATERIALIZED CTE, so from the partial
// index payments_open_idx: with ORDER BY id over the whole table the
// planner walks the primary key instead, every row of the table.
const candidatesSQL = `
WITH o AS MATERIALIZED (
	SELECT id, uid, user_id, amount, status, created_at, updated_at
	FROM payments
	WHERE status NOT IN ('succeeded', 'failed') AND id > $1
	  AND (status = 'unknown' OR ($7 AND created_at < now() - $8 * interval '1 microsecond'))
	  AND ($9::bigint = 0 OR id = $9)
), u AS (
	SELECT * FROM o ORDER BY id LIMIT $2
)
SELECT u.id, u.uid, u.user_id, u.amount, u.status, u.created_at, u.updated_at,
       now() >= u.updated_at + $3 * interval '1 microsecond',
       $4::timestamptz >= u.updated_at + ($3 + $5) * interval '1 microsecond',
       now() < u.created_at + $6 * interval '1 microsecond',
       k.n, k.off, coalesce(k.refs, ''),
       a.n, coalesce(a.ref, ''), coalesce(a.shared, false)
FROM u
CROSS JOIN LATERAL (
	SELECT count(*) AS n,
	       count(*) FILTER (WHERE x.user_id <> u.user_id OR x.amount <> u.amount) AS off,
	       string_agg(x.ref, ', ' ORDER BY x.seq) AS refs
	FROM ` + verify.StatementTable + ` x
	WHERE x.payment_uid = u.uid
) k
CROSS JOIN LATERAL (
	SELECT count(*) AS n, min(x.ref) AS ref,
	       bool_or(EXISTS (
	           SELECT 1 FROM payments q
	           WHERE q.user_id = x.user_id AND q.amount = x.amount AND q.id <> u.id
	             AND x.executed_at BETWEEN q.created_at - $5 * interval '1 microsecond'
	                                   AND q.updated_at + ($3 + $5) * interval '1 microsecond')) AS shared
	FROM ` + verify.StatementTable + ` x
	WHERE u.status = 'unknown' AND x.payment_uid IS NULL AND x.user_id = u.user_id AND x.amount = u.amount
	  AND x.executed_at BETWEEN u.created_at - $5 * interval '1 microsecond'
	                        AND u.updated_at + ($3 + $5) * interval '1 microsecond'
) a
ORDER BY u.id`

// pass is the state of one Run.
type pass struct {
	loaded verify.Loaded
	rep    *Report
	// lookups of stuck payments made so far.
	stuckLookups int
}

// Run makes one reconciliation pass: every unknown payment, and every
// payment accepted or processing for longer than Config.StuckAfter, is
// examined once and resolved when the evidence allows; then the statement's
// executions without a payment are listed and the statement invariants
// checked. An error means the pass could not run; a failed lookup only
// leaves its payment as it was.
func (rc *Reconciler) Run(ctx context.Context) (Report, error) {
	rep := Report{DryRun: rc.cfg.DryRun, Lookup: rc.lookup != nil, StuckAfter: rc.cfg.StuckAfter.String(),
		Resolved: []Resolution{}, Unresolved: []Resolution{}, WithoutPayment: []LostExecution{}}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	conn, loaded, done, err := rc.statement(ctx)
	if err != nil {
		return rep, err
	}
	ok := false
	defer func() { done(ok) }()
	kept := conn == rc.kept
	if kept {
		if loaded.SucceededAfter, err = rc.succeeded.begin(ctx, conn); err != nil {
			return rep, err
		}
	}
	rep, err = rc.run(ctx, conn, loaded, rep)
	ok = err == nil
	if ok && kept {
		rc.succeeded.end(rep, rc.cfg.CommitBound)
	}
	return rep, err
}

// Close closes the connection that keeps the statement (KeepStatement).
func (rc *Reconciler) Close() {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.drop()
}

func (rc *Reconciler) drop() {
	if rc.kept != nil {
		rc.kept.Close(context.Background()) //nolint:errcheck // closing
		rc.kept, rc.loaded = nil, verify.Loaded{}
	}
	rc.succeeded = succeededWatermark{} // a statement loaded whole is checked whole
}

// statement returns the connection of a pass, with the processor's statement
// loaded on it, and done, to call with whether the pass went well. Without
// KeepStatement (or a statement that can be read from a sequence number) it
// is a connection of the pool, with the whole statement loaded, dropped by
// done. With it, the kept connection, whose statement is brought up to date
// with what the processor executed since (loaded whole on the first pass,
// after a failed one, or when the statement is no longer the one loaded);
// done closes it after a failed pass.
func (rc *Reconciler) statement(ctx context.Context) (*pgx.Conn, verify.Loaded, func(ok bool), error) {
	inc, incremental := rc.stmt.(verify.IncrementalStatement)
	if !rc.cfg.KeepStatement || !incremental {
		pc, err := rc.db.Acquire(ctx)
		if err != nil {
			return nil, verify.Loaded{}, nil, fmt.Errorf("acquire connection: %w", err)
		}
		done := func(bool) {
			pc.Exec(context.WithoutCancel(ctx), `DROP TABLE IF EXISTS `+verify.StatementTable) //nolint:errcheck // best effort
			pc.Release()
		}
		loaded, err := setUp(ctx, pc.Conn(), rc.stmt)
		if err != nil {
			done(false)
			return nil, loaded, nil, err
		}
		return pc.Conn(), loaded, done, nil
	}
	done := func(ok bool) {
		if !ok {
			rc.drop() // the next pass starts afresh
		}
	}
	if rc.kept != nil {
		loaded, err := verify.AppendStatement(ctx, rc.kept, inc, rc.loaded)
		if err == nil {
			rc.loaded = loaded
			return rc.kept, loaded, done, nil
		}
		if !errors.Is(err, verify.ErrStatementChanged) {
			rc.drop()
			return nil, loaded, nil, err
		}
		// Loaded whole again, on the same connection, below.
	} else {
		pc, err := rc.db.Acquire(ctx)
		if err != nil {
			return nil, verify.Loaded{}, nil, fmt.Errorf("acquire connection: %w", err)
		}
		rc.kept = pc.Hijack() // the pool's no more: it lives as long as the statement
	}
	if rc.loaded.Executions > 0 {
		// The statement loaded before may have lost executions in the
		// one loaded now: compared whole. (An empty one, loaded whole
		// every pass until it holds a numbered execution, lost nothing.)
		rc.succeeded = succeededWatermark{}
	}
	loaded, err := setUp(ctx, rc.kept, rc.stmt)
	if err != nil {
		rc.drop()
		return nil, loaded, nil, err
	}
	rc.loaded = loaded
	return rc.kept, loaded, done, nil
}

// setUp prepares conn for a pass and loads the whole statement on it.
func setUp(ctx context.Context, conn *pgx.Conn, stmt verify.Statement) (verify.Loaded, error) {
	// A pass is background work: its scans (SucceededNotExecuted reads
	// every succeeded payment) run on one core, not on a parallel gather
	// that takes every core from the requests for a second or more
	// (docs/reads.md, "The reconciler's scans"). Each statement is planned
	// for its values: a generic plan of succeeded_not_executed's
	// "transition id > $3" would guess a third of the table and scan it.
	if _, err := conn.Exec(ctx, `SET max_parallel_workers_per_gather = 0; SET plan_cache_mode = force_custom_plan`); err != nil {
		return verify.Loaded{}, fmt.Errorf("set up connection: %w", err)
	}
	return verify.LoadStatement(ctx, conn, stmt)
}

// run is a pass on conn, where the statement is loaded.
func (rc *Reconciler) run(ctx context.Context, conn *pgx.Conn, loaded verify.Loaded, rep Report) (Report, error) {
	var err error
	rep.StartedAt, rep.Statement, rep.Executions = loaded.At, loaded.Present, loaded.Executions
	rep.SucceededAfter = loaded.SucceededAfter
	ps := &pass{loaded: loaded, rep: &rep}

	var after int64
	for {
		rows, err := conn.Query(ctx, candidatesSQL, after, rc.cfg.BatchSize,
			rc.cfg.SafetyBound.Microseconds(), loaded.At, rc.cfg.ClockSkew.Microseconds(), rc.cfg.KeyRetention.Microseconds(),
			rc.cfg.StuckAfter > 0, rc.cfg.StuckAfter.Microseconds(), rc.cfg.PaymentID)
		if err != nil {
			return rep, fmt.Errorf("read unknown and stuck payments: %w", err)
		}
		batch, err := pgx.CollectRows(rows, pgx.RowToStructByPos[candidate])
		if err != nil {
			return rep, fmt.Errorf("read unknown and stuck payments: %w", err)
		}
		for _, c := range batch {
			if err := rc.resolve(ctx, c, ps); err != nil {
				return rep, err
			}
			after = c.ID
		}
		if len(batch) < rc.cfg.BatchSize {
			break
		}
	}

	if loaded.Present {
		if rep.WithoutPayment, rep.WithoutPaymentCount, err = lostExecutions(ctx, conn, nil, maxListed); err != nil {
			return rep, err
		}
	}
	if rep.Mismatches, err = verify.New(rc.db, nil, rc.cfg.Verify).CheckStatement(ctx, conn, loaded); err != nil {
		return rep, err
	}
	rep.FinishedAt = time.Now().UTC()
	return rep, nil
}

// resolve decides one payment and applies the decision unless dry-running.
func (rc *Reconciler) resolve(ctx context.Context, c candidate, ps *pass) error {
	rep := ps.rep
	r := Resolution{PaymentID: c.ID, PaymentUID: c.UID, UserID: c.UserID, Amount: c.Amount, From: c.Status}
	if c.Status == payment.StatusUnknown {
		rep.Unknown++
		r.To, r.Why = rc.decide(ctx, c, ps.loaded, rep)
	} else {
		rep.Stuck++
		r.To, r.Why = rc.decideStuck(ctx, c, ps)
	}
	if r.To == "" {
		rep.Left++
		appendListed(&rep.Unresolved, r)
		return nil
	}
	if !rc.cfg.DryRun {
		applied, err := rc.apply(ctx, r)
		if err != nil {
			return err
		}
		if !applied {
			// Another path finished it meanwhile (the status consumer, a
			// replayed outcome).
			r.To, r.Why = "", "final when the resolution was written: changed meanwhile"
			rep.Left++
			appendListed(&rep.Unresolved, r)
			return nil
		}
		r.Applied = true
	}
	switch r.To {
	case payment.StatusSucceeded:
		rep.Succeeded++
	case payment.StatusFailed:
		rep.Failed++
	}
	appendListed(&rep.Resolved, r)
	return nil
}

func appendListed(list *[]Resolution, r Resolution) {
	if len(*list) < maxListed {
		*list = append(*list, r)
	}
}

// keyed returns the decision the statement's executions under c's key
// allow, and false when the statement shows none.
func keyed(c candidate, key string) (payment.Status, string, bool) {
	if c.Keyed == 0 {
		return "", "", false
	}
	if c.KeyedOff > 0 {
		return "", fmt.Sprintf("the processor executed %s for another user or amount (%s): needs an operator", key, c.KeyedRefs), true
	}
	why := fmt.Sprintf("reconciled: the processor's statement shows %s executed as %s", key, c.KeyedRefs)
	if c.Keyed > 1 {
		why += fmt.Sprintf(" (%d times: reported as paid twice)", c.Keyed)
	}
	return payment.StatusSucceeded, why, true
}

// decide returns the status to resolve unknown payment c to and why, or ""
// and why not.
func (rc *Reconciler) decide(ctx context.Context, c candidate, loaded verify.Loaded, rep *Report) (payment.Status, string) {
	key := payment.ProcessorKey(c.UID)
	// 1. Executions under the payment's own key.
	if to, why, ok := keyed(c, key); ok {
		return to, why
	}
	// 2. Ask the processor by key.
	if rc.lookup != nil {
		res, found, err := rc.lookup.Lookup(ctx, key)
		switch {
		case errors.Is(err, ErrNoLookupRoute) && loaded.Present:
			// The processor speaks the as-is API (it may switch at
			// runtime): the statement decides.
		case err != nil:
			rep.Errors++
			return "", fmt.Sprintf("lookup failed: %v", err)
		case found && res.Status == "succeeded":
			if res.UserID != c.UserID || res.Amount != c.Amount {
				return "", fmt.Sprintf("the processor executed %s as %s for user %d amount %d: needs an operator", key, res.ID, res.UserID, res.Amount)
			}
			return payment.StatusSucceeded, fmt.Sprintf("reconciled: the processor reports %s succeeded as %s", key, res.ID)
		case found && res.Status == "declined":
			return payment.StatusFailed, fmt.Sprintf("reconciled: declined by processor: %s", res.Reason)
		case found:
			return "", fmt.Sprintf("the processor reports %s with status %q", key, res.Status)
		case !c.WindowClosed:
			return "", fmt.Sprintf("not found by the processor yet, but it may still execute it until %s",
				c.UpdatedAt.Add(rc.cfg.SafetyBound).UTC().Format(time.RFC3339))
		case c.AsIs > 0:
			return "", fmt.Sprintf("not found by key, but %d executions without a key match its user and amount: ambiguous", c.AsIs)
		case c.KeyAlive:
			return payment.StatusFailed, "reconciled: not executed by processor (lookup by key: not found)"
		}
		// No lookup route, or the key may have expired: fall through to
		// the statement.
		if err == nil && !loaded.Present {
			return "", "not found by key, but older than the processor's key retention, and no statement to check"
		}
	}
	// 3. The statement, without keys: by user, amount and time window.
	if !loaded.Present {
		return "", "no statement and no lookup: nothing to resolve it from"
	}
	if !c.StatementCovers {
		return "", fmt.Sprintf("the statement was read before its window closed (%s)",
			c.UpdatedAt.Add(rc.cfg.SafetyBound+rc.cfg.ClockSkew).UTC().Format(time.RFC3339))
	}
	switch {
	case c.AsIs == 0:
		return payment.StatusFailed, "reconciled: not executed by processor (no execution of its user and amount in its window)"
	case c.AsIs == 1 && !c.AsIsShared:
		return payment.StatusSucceeded, fmt.Sprintf("reconciled: matched execution %s by user, amount and time", c.AsIsRef)
	case c.AsIs == 1:
		return "", fmt.Sprintf("execution %s matches it and another payment of the same user and amount: ambiguous", c.AsIsRef)
	default:
		return "", fmt.Sprintf("%d executions match its user and amount in its window: ambiguous", c.AsIs)
	}
}

// decideStuck returns the status to resolve c, accepted or processing for
// longer than StuckAfter, to and why, or "" and why not. Only what the
// processor says under the payment's key counts: executed → succeeded,
// declined → failed. Not found proves nothing, since the request may still
// be queued in Kafka and be executed later; and an execution without a key
// (as-is) cannot be told from one of a later payment of the same user and
// amount while this one may still be sent.
func (rc *Reconciler) decideStuck(ctx context.Context, c candidate, ps *pass) (payment.Status, string) {
	key := payment.ProcessorKey(c.UID)
	age := fmt.Sprintf("%s for %s since its acceptance", c.Status, ps.loaded.At.Sub(c.CreatedAt).Round(time.Second))
	if to, why, ok := keyed(c, key); ok {
		if to != "" {
			why += " (" + age + ")"
		}
		return to, why
	}
	if rc.lookup == nil {
		return "", fmt.Sprintf("%s; the statement shows no execution under %s, and without the lookup a decline cannot be learned", age, key)
	}
	if ps.stuckLookups >= rc.cfg.StuckLookups {
		return "", fmt.Sprintf("%s; not looked up: this pass's %d lookups of stuck payments are spent", age, rc.cfg.StuckLookups)
	}
	ps.stuckLookups++
	res, found, err := rc.lookup.Lookup(ctx, key)
	switch {
	case errors.Is(err, ErrNoLookupRoute) && ps.loaded.Present:
		return "", fmt.Sprintf("%s; the processor has no lookup (as-is API?) and its statement shows no execution under %s", age, key)
	case err != nil:
		ps.rep.Errors++
		return "", fmt.Sprintf("%s; lookup failed: %v", age, err)
	case found && res.Status == "succeeded":
		if res.UserID != c.UserID || res.Amount != c.Amount {
			return "", fmt.Sprintf("the processor executed %s as %s for user %d amount %d: needs an operator", key, res.ID, res.UserID, res.Amount)
		}
		return payment.StatusSucceeded, fmt.Sprintf("reconciled: the processor reports %s succeeded as %s (%s)", key, res.ID, age)
	case found && res.Status == "declined":
		return payment.StatusFailed, fmt.Sprintf("reconciled: declined by processor: %s (%s)", res.Reason, age)
	case found:
		return "", fmt.Sprintf("%s; the processor reports %s with status %q", age, key, res.Status)
	default:
		return "", fmt.Sprintf("%s; not found by the processor under %s: its request may still be queued (Kafka), left to the pipeline", age, key)
	}
}

// apply writes r in one transaction. It returns false when the payment is
// final by then.
func (rc *Reconciler) apply(ctx context.Context, r Resolution) (bool, error) {
	applied := false
	err := postgres.InTx(ctx, rc.db, func(tx pgx.Tx) error {
		p, err := ledger.Lock(ctx, tx, r.PaymentID)
		if err != nil {
			return err
		}
		if p.Status.Final() {
			return nil
		}
		res, err := ledger.Apply(ctx, tx, ledger.Transition{
			PaymentID: r.PaymentID, PaymentUID: r.PaymentUID, UserID: r.UserID, To: r.To, Actor: Actor, Reason: r.Why,
		})
		if err != nil {
			return err
		}
		if res.Change != ledger.Applied {
			return nil
		}
		applied = true
		if rc.cfg.Emit != nil && res.Event != nil {
			return rc.cfg.Emit(ctx, tx, *res.Event)
		}
		return nil
	})
	if err != nil {
		return false, &ResolveError{PaymentID: r.PaymentID, To: r.To, Err: err}
	}
	return applied, nil
}

// ResolveError is a resolution that could not be written: its transaction
// was rolled back, and the pass stopped. It names the payment, so that the
// caller can record the failed resolution (financectl's admin_audit row).
type ResolveError struct {
	PaymentID int64
	To        payment.Status
	Err       error
}

func (e *ResolveError) Error() string {
	return fmt.Sprintf("resolve payment %d to %s: %v", e.PaymentID, e.To, e.Err)
}

func (e *ResolveError) Unwrap() error { return e.Err }

// Watch runs a pass every interval until ctx ends, handing each report (or
// the pass's error) to report. A failed pass does not stop the watch: the
// database or the processor may be back by the next one.
func (rc *Reconciler) Watch(ctx context.Context, every time.Duration, report func(Report, error)) error {
	if every <= 0 {
		return errors.New("watch interval must be positive")
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		rep, err := rc.Run(ctx)
		if ctx.Err() != nil {
			return nil
		}
		report(rep, err)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
