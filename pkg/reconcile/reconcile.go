// Package reconcile compares our payments with the processor's record of
// what it executed. It resolves payments left unknown (the dispatcher could
// not learn their outcome) from that record, never by guessing, and reports
// every mismatch between the two sides.
//
// Evidence, strongest first:
//
//  1. The statement has executions under the payment's key "payment-<id>":
//     it was executed → succeeded (if user and amount agree).
//  2. The proposed API's lookup GET /v2/payments/payment-<id>: succeeded →
//     succeeded; declined → failed; 404 → failed "not executed by
//     processor", but only once the processor can no longer execute it
//     (Config.SafetyBound after the payment became unknown) and while the
//     processor still keeps its key (Config.KeyRetention).
//  3. The as-is statement (no keys): executions of the same user and amount
//     within the payment's time window. Exactly one, claimed by no other
//     payment → succeeded; none once the window has closed → failed;
//     anything else is ambiguous and stays unknown, reported.
//
// A resolution is written in one PostgreSQL transaction through
// ledger.Apply (the status consumer's rules), audited in
// payment_transitions with actor "reconciler" and the evidence as reason.
package reconcile

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

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
	// DryRun decides and reports without changing anything.
	DryRun bool
	// BatchSize is how many unknown payments are read per query.
	BatchSize int
	// Verify tunes the mismatch report (its statement invariants).
	Verify verify.Config
	// Emit, when set, is called inside each resolution's transaction with
	// its event, e.g. to write it to the outbox for payments.events.
	Emit func(ctx context.Context, tx pgx.Tx, ev ledger.Event) error
}

// DefaultConfig returns the defaults of financectl reconcile.
func DefaultConfig() Config {
	return Config{
		SafetyBound:  time.Minute,
		KeyRetention: 24 * time.Hour,
		ClockSkew:    5 * time.Second,
		BatchSize:    500,
		Verify:       verify.DefaultConfig(),
	}
}

// Resolution is what the reconciler decided for one unknown payment.
type Resolution struct {
	PaymentID int64 `json:"payment_id"`
	UserID    int64 `json:"user_id"`
	Amount    int64 `json:"amount"`
	// To is succeeded or failed; empty when the payment stays unknown.
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
	// Unknown is how many unknown payments were examined.
	Unknown   int64 `json:"unknown"`
	Succeeded int64 `json:"succeeded"`
	Failed    int64 `json:"failed"`
	// Left stay unknown: too recent, ambiguous, or the processor could not
	// be asked. Errors counts the lookups that failed among them.
	Left   int64 `json:"left"`
	Errors int64 `json:"errors"`
	// Resolved lists the resolutions (applied, or proposed in a dry run);
	// Unresolved the payments left unknown, each with why.
	Resolved   []Resolution `json:"resolved"`
	Unresolved []Resolution `json:"unresolved"`
	// Mismatches are the statement invariants of package verify after the
	// pass: paid twice, paid there but failed here, amount differences, ...
	Mismatches []verify.Finding `json:"mismatches,omitempty"`
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
	fmt.Fprintf(&b, "  unknown payments: %d → succeeded %d, failed %d, left unknown %d (lookup errors %d)\n",
		r.Unknown, r.Succeeded, r.Failed, r.Left, r.Errors)
	for _, x := range r.Resolved {
		verb := "resolved"
		if !x.Applied {
			verb = "would resolve"
		}
		fmt.Fprintf(&b, "    payment %d (user %d, amount %d): %s → %s: %s\n", x.PaymentID, x.UserID, x.Amount, verb, x.To, x.Why)
	}
	for _, x := range r.Unresolved {
		fmt.Fprintf(&b, "    payment %d (user %d, amount %d): left unknown: %s\n", x.PaymentID, x.UserID, x.Amount, x.Why)
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

// candidate is an unknown payment with the statement's evidence about it.
type candidate struct {
	ID, UserID, Amount int64
	CreatedAt          time.Time
	UnknownSince       time.Time
	// WindowClosed: the processor can no longer execute it (SafetyBound
	// has passed since it became unknown).
	WindowClosed bool
	// StatementCovers: the statement was read after the window closed.
	StatementCovers bool
	// KeyAlive: the processor still keeps its idempotency key.
	KeyAlive bool
	// Keyed executions under "payment-<id>"; KeyedOff of them name
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

// The window of a payment q is [created_at − skew, updated_at + safety +
// skew]: an execution for it cannot be earlier than its acceptance, nor
// later than the safety bound after its last change.
const candidatesSQL = `
WITH u AS (
	SELECT id, user_id, amount, created_at, updated_at
	FROM payments
	WHERE status = 'unknown' AND id > $1
	ORDER BY id
	LIMIT $2
)
SELECT u.id, u.user_id, u.amount, u.created_at, u.updated_at,
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
	WHERE x.payment_id = u.id
) k
CROSS JOIN LATERAL (
	SELECT count(*) AS n, min(x.ref) AS ref,
	       bool_or(EXISTS (
	           SELECT 1 FROM payments q
	           WHERE q.user_id = x.user_id AND q.amount = x.amount AND q.id <> u.id
	             AND x.executed_at BETWEEN q.created_at - $5 * interval '1 microsecond'
	                                   AND q.updated_at + ($3 + $5) * interval '1 microsecond')) AS shared
	FROM ` + verify.StatementTable + ` x
	WHERE x.payment_id IS NULL AND x.user_id = u.user_id AND x.amount = u.amount
	  AND x.executed_at BETWEEN u.created_at - $5 * interval '1 microsecond'
	                        AND u.updated_at + ($3 + $5) * interval '1 microsecond'
) a
ORDER BY u.id`

// Run makes one reconciliation pass: every unknown payment is examined once
// and resolved when the evidence allows, then the statement invariants are
// checked. An error means the pass could not run; a failed lookup only
// leaves its payment unknown.
func (rc *Reconciler) Run(ctx context.Context) (Report, error) {
	rep := Report{DryRun: rc.cfg.DryRun, Lookup: rc.lookup != nil, Resolved: []Resolution{}, Unresolved: []Resolution{}}
	conn, err := rc.db.Acquire(ctx)
	if err != nil {
		return rep, fmt.Errorf("acquire connection: %w", err)
	}
	defer conn.Release()
	defer conn.Exec(context.WithoutCancel(ctx), `DROP TABLE IF EXISTS `+verify.StatementTable) //nolint:errcheck // best effort

	loaded, err := verify.LoadStatement(ctx, conn.Conn(), rc.stmt)
	if err != nil {
		return rep, err
	}
	rep.StartedAt, rep.Statement, rep.Executions = loaded.At, loaded.Present, loaded.Executions

	var after int64
	for {
		rows, err := conn.Query(ctx, candidatesSQL, after, rc.cfg.BatchSize,
			rc.cfg.SafetyBound.Microseconds(), loaded.At, rc.cfg.ClockSkew.Microseconds(), rc.cfg.KeyRetention.Microseconds())
		if err != nil {
			return rep, fmt.Errorf("read unknown payments: %w", err)
		}
		batch, err := pgx.CollectRows(rows, pgx.RowToStructByPos[candidate])
		if err != nil {
			return rep, fmt.Errorf("read unknown payments: %w", err)
		}
		for _, c := range batch {
			if err := rc.resolve(ctx, c, loaded, &rep); err != nil {
				return rep, err
			}
			after = c.ID
		}
		if len(batch) < rc.cfg.BatchSize {
			break
		}
	}

	if rep.Mismatches, err = verify.New(rc.db, nil, rc.cfg.Verify).CheckStatement(ctx, conn.Conn(), loaded); err != nil {
		return rep, err
	}
	rep.FinishedAt = time.Now().UTC()
	return rep, nil
}

// resolve decides one payment and applies the decision unless dry-running.
func (rc *Reconciler) resolve(ctx context.Context, c candidate, loaded verify.Loaded, rep *Report) error {
	rep.Unknown++
	r := Resolution{PaymentID: c.ID, UserID: c.UserID, Amount: c.Amount}
	r.To, r.Why = rc.decide(ctx, c, loaded, rep)
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
			// Another path moved it meanwhile (e.g. a replayed outcome).
			r.To, r.Why = "", "no longer unknown when the resolution was written: changed meanwhile"
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

// decide returns the status to resolve c to and why, or "" and why not.
func (rc *Reconciler) decide(ctx context.Context, c candidate, loaded verify.Loaded, rep *Report) (payment.Status, string) {
	key := fmt.Sprintf("%s%d", verify.KeyPrefix, c.ID)
	// 1. Executions under the payment's own key.
	if c.Keyed > 0 {
		if c.KeyedOff > 0 {
			return "", fmt.Sprintf("the processor executed %s for another user or amount (%s): needs an operator", key, c.KeyedRefs)
		}
		why := fmt.Sprintf("reconciled: the processor's statement shows %s executed as %s", key, c.KeyedRefs)
		if c.Keyed > 1 {
			why += fmt.Sprintf(" (%d times: reported as paid twice)", c.Keyed)
		}
		return payment.StatusSucceeded, why
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
				c.UnknownSince.Add(rc.cfg.SafetyBound).UTC().Format(time.RFC3339))
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
			c.UnknownSince.Add(rc.cfg.SafetyBound+rc.cfg.ClockSkew).UTC().Format(time.RFC3339))
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

// apply writes r in one transaction. It returns false when the payment is
// no longer unknown.
func (rc *Reconciler) apply(ctx context.Context, r Resolution) (bool, error) {
	applied := false
	err := postgres.InTx(ctx, rc.db, func(tx pgx.Tx) error {
		p, err := ledger.Lock(ctx, tx, r.PaymentID)
		if err != nil {
			return err
		}
		if p.Status != payment.StatusUnknown {
			return nil
		}
		res, err := ledger.Apply(ctx, tx, ledger.Transition{
			PaymentID: r.PaymentID, UserID: r.UserID, To: r.To, Actor: Actor, Reason: r.Why,
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
		return false, fmt.Errorf("resolve payment %d to %s: %w", r.PaymentID, r.To, err)
	}
	return applied, nil
}

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
