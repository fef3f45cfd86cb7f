package check

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/finsvc/finance/loadtest/internal/target"
	"github.com/finsvc/finance/pkg/simclient"
	"github.com/finsvc/finance/pkg/verify"
)

// Pipeline checks the pipeline's database (the schema of pkg/schema).
type Pipeline struct {
	pool      *pgxpool.Pool
	keyPrefix string
	firstUser int64
	lastUser  int64
}

// NewPipeline returns the checker of a run whose Idempotency-Keys start with
// keyPrefix and whose users are firstUser..lastUser.
func NewPipeline(pool *pgxpool.Pool, keyPrefix string, firstUser, lastUser int64) *Pipeline {
	return &Pipeline{pool: pool, keyPrefix: keyPrefix, firstUser: firstUser, lastUser: lastUser}
}

// likePrefix escapes s for a LIKE pattern that matches what starts with s.
func likePrefix(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return r.Replace(s) + "%"
}

// Backlog is how many of the run's payments are not final yet.
type Backlog struct {
	Accepted   int64 `json:"accepted"`
	Processing int64 `json:"processing"`
	Unknown    int64 `json:"unknown"`
}

// Pending is what is still on its way to the processor or back.
func (b Backlog) Pending() int64 { return b.Accepted + b.Processing }

// Backlog counts the run's payments that are not final, by status. It reads
// through the partial index of open payments.
func (p *Pipeline) Backlog(ctx context.Context) (Backlog, error) {
	rows, err := p.pool.Query(ctx, `
		SELECT status, count(*) FROM payments
		WHERE status NOT IN ('succeeded', 'failed') AND idempotency_key LIKE $1
		GROUP BY status`, likePrefix(p.keyPrefix))
	if err != nil {
		return Backlog{}, fmt.Errorf("count open payments: %w", err)
	}
	defer rows.Close()
	var b Backlog
	for rows.Next() {
		var s string
		var n int64
		if err := rows.Scan(&s, &n); err != nil {
			return Backlog{}, err
		}
		switch s {
		case "accepted":
			b.Accepted = n
		case "processing":
			b.Processing = n
		case "unknown":
			b.Unknown = n
		}
	}
	return b, rows.Err()
}

type dbPayment struct {
	ID     int64
	UserID int64
	Status string
	Key    string
}

// Check compares what the clients were told (writes) with the run's
// payments, and runs pkg/verify's invariants over the ledger and the
// processor's executions since the run began (execs). The ledger
// invariants are checked over the whole database, not only the run's
// users: a run is judged on a ledger that is right.
func (p *Pipeline) Check(ctx context.Context, writes []Write, execs []simclient.Execution) (Report, error) {
	rep := Report{Target: string(target.Pipeline), ByStatus: map[string]int64{}}
	pays, since, err := p.runPayments(ctx)
	if err != nil {
		return rep, err
	}
	rep.InDatabase = int64(len(pays))
	byKey := make(map[string]bool, len(pays))
	for _, pay := range pays {
		byKey[pay.Key] = true
	}

	// What the clients were told.
	for _, w := range writes {
		rep.Requests++
		switch {
		case w.Class == target.OK:
			rep.ToldOK++
			if !byKey[w.Key] {
				rep.Lost++
				rep.AcceptedMissing++
				rep.example("pipeline-1", "payment %s (id %d) was accepted but is not in the database", w.Key, w.PaymentID)
			}
		default:
			rep.ToldFailed++
			if unresolved(w) {
				rep.Unresolved++
			}
			if byKey[w.Key] {
				rep.ClientErrorsInDatabase++
			}
		}
	}

	// Every payment the run made is final by the drain deadline.
	var open int64
	for _, pay := range pays {
		rep.ByStatus[pay.Status]++
		switch pay.Status {
		case "accepted", "processing", "unknown":
			open++
			rep.example("pipeline-2", "payment %d (%s) is still %s at the drain deadline", pay.ID, pay.Key, pay.Status)
		}
	}
	for _, e := range execs {
		if e.UserID >= p.firstUser && e.UserID <= p.lastUser {
			rep.Executions++
		}
	}

	// The ledger, and the ledger against what the processor executed
	// since the run began. The run's own bound on open payments is the
	// drain deadline, counted above, so verify's age bound is off.
	cfg := verify.DefaultConfig()
	cfg.StuckAfter = 0
	cfg.StatementFrom = since
	ledger, err := verify.New(p.pool, verify.SliceStatement(execs), cfg).Check(ctx)
	if err != nil {
		return rep, fmt.Errorf("verify the ledger: %w", err)
	}
	rep.addLedger(ledger, open)
	rep.Notes = append(rep.Notes,
		"The ledger invariants are pkg/verify's (as financectl verify), over the whole database; the processor's statement is what it executed since the run began, "+
			"whose executions name their payment by the dispatcher's key payment-<uid> (or, without such a key, by user and amount, which the load generator keeps unique per user and run).",
		"Stuck counts the run's payments still open at the drain deadline, or verify's payments open past its bounds if more.")
	return rep, nil
}

// runPayments reads the run's payments, and when the first was made (the
// database's clock now when there is none): the statement of the
// executions since the run began holds every payment made from then on.
func (p *Pipeline) runPayments(ctx context.Context) ([]dbPayment, time.Time, error) {
	rows, err := p.pool.Query(ctx, `
		SELECT id, user_id, status, idempotency_key FROM payments
		WHERE user_id BETWEEN $1 AND $2 AND idempotency_key LIKE $3`,
		p.firstUser, p.lastUser, likePrefix(p.keyPrefix))
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("read the run's payments: %w", err)
	}
	pays, err := pgx.CollectRows(rows, pgx.RowToStructByPos[dbPayment])
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("read the run's payments: %w", err)
	}
	var since time.Time
	if err := p.pool.QueryRow(ctx, `SELECT coalesce(min(created_at), now()) FROM payments WHERE idempotency_key LIKE $1`,
		likePrefix(p.keyPrefix)).Scan(&since); err != nil {
		return nil, time.Time{}, fmt.Errorf("read when the run began: %w", err)
	}
	return pays, since, nil
}

// count is one of the report's four verdict counts.
type count int

const (
	countLost count = iota + 1
	countPaidTwice
	countStuck
	countBalanceMismatch
)

// verdictOf says which verdict count each of pkg/verify's invariants adds
// to, so that any violation fails the run (as the chaos check adds them).
var verdictOf = map[verify.Kind]count{
	verify.ExecutedButFailed:       countLost,
	verify.ExecutedNotSucceeded:    countLost,
	verify.ExecutionWithoutPayment: countLost,
	verify.UnmatchedExecutions:     countLost,
	verify.PaidTwice:               countPaidTwice,
	verify.StuckNonfinal:           countStuck,
	verify.StuckInFlight:           countStuck,
	verify.UnknownTooLong:          countStuck,
	verify.BalanceMismatch:         countBalanceMismatch,
	verify.HeldMismatch:            countBalanceMismatch,
	verify.HoldMismatch:            countBalanceMismatch,
	verify.NegativeAvailable:       countBalanceMismatch,
	verify.EntryMismatch:           countBalanceMismatch,
	verify.SucceededWithoutEntry:   countBalanceMismatch,
	verify.OutcomeConflict:         countBalanceMismatch,
	verify.AmountMismatch:          countBalanceMismatch,
	verify.SucceededNotExecuted:    countBalanceMismatch,
}

// addLedger adds pkg/verify's findings to the verdict counts; open is how
// many of the run's payments were open at the drain deadline.
func (r *Report) addLedger(v verify.Report, open int64) {
	r.Ledger = &v
	var stuck int64
	for _, f := range v.Findings {
		switch verdictOf[f.Kind] {
		case countLost:
			r.Lost += f.Count
		case countPaidTwice:
			r.PaidTwice += f.Count
		case countStuck:
			stuck += f.Count
		default: // countBalanceMismatch, and any kind verify adds later
			r.BalanceMismatch += f.Count
		}
		switch f.Kind {
		case verify.ExecutedButFailed:
			r.ExecutedButFailed = f.Count
		case verify.SucceededNotExecuted:
			r.RecordedNotExecuted = f.Count
		case verify.ExecutionWithoutPayment, verify.UnmatchedExecutions:
			r.OrphanExecutions += f.Count
		}
		for _, e := range f.Examples {
			r.example(string(f.Kind), "%s: payment %d, user %d: %s", f.Kind, e.PaymentID, e.UserID, e.Detail)
		}
	}
	// A run payment open past verify's bounds is in both: count it once.
	r.Stuck = max(open, stuck)
}
