package check

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/finsvc/finance/loadtest/internal/target"
	"github.com/finsvc/finance/pkg/payment"
	"github.com/finsvc/finance/pkg/simclient"
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
	UID    string
	UserID int64
	Amount int64
	Status string
	Hold   int64
	Key    string
}

// Check runs every invariant over the run's payments, the client's view
// (writes) and the processor's executions after the run began (execs).
func (p *Pipeline) Check(ctx context.Context, writes []Write, execs []simclient.Execution) (Report, error) {
	rep := Report{Target: string(target.Pipeline), ByStatus: map[string]int64{}}
	rows, err := p.pool.Query(ctx, `
		SELECT id, uid::text, user_id, amount, status, hold, idempotency_key FROM payments
		WHERE user_id BETWEEN $1 AND $2 AND idempotency_key LIKE $3`,
		p.firstUser, p.lastUser, likePrefix(p.keyPrefix))
	if err != nil {
		return rep, fmt.Errorf("read the run's payments: %w", err)
	}
	pays, err := pgx.CollectRows(rows, pgx.RowToStructByPos[dbPayment])
	if err != nil {
		return rep, fmt.Errorf("read the run's payments: %w", err)
	}
	byKey := make(map[string]*dbPayment, len(pays))
	byID := make(map[int64]*dbPayment, len(pays))
	byUID := make(map[string]*dbPayment, len(pays))
	byUA := make(map[userAmount]*dbPayment, len(pays))
	for i := range pays {
		byKey[pays[i].Key] = &pays[i]
		byID[pays[i].ID] = &pays[i]
		byUID[pays[i].UID] = &pays[i]
		byUA[userAmount{pays[i].UserID, pays[i].Amount}] = &pays[i]
	}
	rep.InDatabase = int64(len(pays))

	// The client's view.
	for _, w := range writes {
		rep.Requests++
		_, inDB := byKey[w.Key]
		switch {
		case w.Class == target.OK:
			rep.ToldOK++
			if !inDB {
				rep.Lost++
				rep.AcceptedMissing++
				rep.example("pipeline-1", "payment %s (id %d) was accepted but is not in the database", w.Key, w.PaymentID)
			}
		default:
			rep.ToldFailed++
			if unresolved(w) {
				rep.Unresolved++
			}
			if inDB {
				rep.ClientErrorsInDatabase++
			}
		}
	}

	// The processor's view: executions of the run's users.
	execCount := map[int64]int{}
	execSum := map[int64]int64{} // per user, executions that belong to the run
	var unkeyed []simclient.Execution
	var keyedOthers []simclient.Execution
	for _, e := range execs {
		if e.UserID < p.firstUser || e.UserID > p.lastUser {
			continue
		}
		id := paymentIDFromExecution(e.IdempotencyKey, e.Reference)
		if uid, ok := payment.ParseProcessorKey(e.IdempotencyKey); ok {
			// The key names the payment's uid: only that payment is it,
			// even where the numeric reference names another.
			id = 0
			if pay := byUID[uid.String()]; pay != nil {
				id = pay.ID
			} else {
				keyedOthers = append(keyedOthers, e)
				continue
			}
		}
		switch {
		case id != 0 && byID[id] != nil:
			execCount[id]++
			execSum[e.UserID] += e.Amount
			rep.Executions++
		case id != 0:
			keyedOthers = append(keyedOthers, e)
		default:
			unkeyed = append(unkeyed, e)
		}
	}
	// A dispatcher on the as-is API sends no key: match by (user, amount),
	// which names one payment of the run.
	for _, e := range unkeyed {
		if pay := byUA[userAmount{e.UserID, e.Amount}]; pay != nil {
			execCount[pay.ID]++
			execSum[e.UserID] += e.Amount
			rep.Executions++
			continue
		}
		rep.Lost++
		rep.OrphanExecutions++
		execSum[e.UserID] += e.Amount
		rep.example("pipeline-2", "processor execution %s (user %d, amount %d) matches no payment of the run", e.ID, e.UserID, e.Amount)
	}
	// Keyed executions of payments that are not the run's: another run's or
	// an unknown payment. Only the unknown ones are lost money.
	if len(keyedOthers) > 0 {
		// Each names its payment by the key's uid, or by the numeric
		// reference where the key is not a uid key.
		names := make([]string, len(keyedOthers))
		for i, e := range keyedOthers {
			if uid, ok := payment.ParseProcessorKey(e.IdempotencyKey); ok {
				names[i] = "uid:" + uid.String()
			} else {
				names[i] = fmt.Sprintf("id:%d", paymentIDFromExecution(e.IdempotencyKey, e.Reference))
			}
		}
		rows, err := p.pool.Query(ctx, `
			SELECT n FROM unnest($1::text[]) AS n
			WHERE EXISTS (SELECT 1 FROM payments
				WHERE (n LIKE 'uid:%' AND uid::text = substr(n, 5)) OR (n LIKE 'id:%' AND id::text = substr(n, 4)))`, names)
		if err != nil {
			return rep, fmt.Errorf("look up executed payments: %w", err)
		}
		known, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return rep, fmt.Errorf("look up executed payments: %w", err)
		}
		exists := map[string]bool{}
		for _, n := range known {
			exists[n] = true
		}
		for i, e := range keyedOthers {
			if !exists[names[i]] {
				rep.Lost++
				rep.OrphanExecutions++
				execSum[e.UserID] += e.Amount
				rep.example("pipeline-3", "processor executed %s (key %q, user %d, amount %d), which is in no database row", names[i], e.IdempotencyKey, e.UserID, e.Amount)
			}
		}
	}

	// The database's view, against both.
	pendingUser := map[int64]bool{}
	for _, pay := range pays {
		rep.ByStatus[pay.Status]++
		n := execCount[pay.ID]
		switch pay.Status {
		case "accepted", "processing", "unknown":
			rep.Stuck++
			pendingUser[pay.UserID] = true
			if rep.Stuck <= 5 {
				rep.example("pipeline-4", "payment %d (%s) is still %s at the drain deadline", pay.ID, pay.Key, pay.Status)
			}
		case "failed":
			if n > 0 {
				rep.Lost++
				rep.ExecutedButFailed++
				rep.example("pipeline-5", "payment %d was executed by the processor but recorded as failed", pay.ID)
			}
		case "succeeded":
			if n == 0 {
				rep.RecordedNotExecuted++
				rep.example("pipeline-6", "payment %d is succeeded but the processor never executed it", pay.ID)
			}
		}
		if n > 1 {
			rep.PaidTwice++
			rep.example("pipeline-7", "payment %d was executed %d times", pay.ID, n)
		}
	}

	mismatch, err := p.balances(ctx, &rep, execSum, pendingUser)
	if err != nil {
		return rep, err
	}
	rep.BalanceMismatch = mismatch
	rep.Notes = append(rep.Notes,
		"Payments are matched to processor executions by the dispatcher's Idempotency-Key payment-<id> (or by user and amount, which the load generator keeps unique per user and run).",
		"The ledger-against-processor comparison skips users with a payment still open; those are counted as stuck.")
	return rep, nil
}

// balances counts the users whose wallet is inconsistent.
func (p *Pipeline) balances(ctx context.Context, rep *Report, execSum map[int64]int64, pendingUser map[int64]bool) (int64, error) {
	rows, err := p.pool.Query(ctx, `
		SELECT w.user_id, w.balance, w.held,
		       COALESCE((SELECT sum(e.amount) FROM entries e WHERE e.user_id = w.user_id), 0)::bigint,
		       COALESCE((SELECT sum(p.hold) FROM payments p
		                 WHERE p.user_id = w.user_id AND p.status NOT IN ('succeeded', 'failed')), 0)::bigint,
		       COALESCE((SELECT sum(e.amount) FROM entries e JOIN payments p ON p.id = e.payment_id
		                 WHERE e.user_id = w.user_id AND p.idempotency_key LIKE $3), 0)::bigint
		FROM wallets w WHERE w.user_id BETWEEN $1 AND $2`,
		p.firstUser, p.lastUser, likePrefix(p.keyPrefix))
	if err != nil {
		return 0, fmt.Errorf("read wallets: %w", err)
	}
	defer rows.Close()
	var bad int64
	for rows.Next() {
		var user, balance, held, entries, holds, runEntries int64
		if err := rows.Scan(&user, &balance, &held, &entries, &holds, &runEntries); err != nil {
			return 0, err
		}
		var why []string
		if balance != entries {
			why = append(why, fmt.Sprintf("balance %d != sum(entries) %d", balance, entries))
		}
		if held != holds {
			why = append(why, fmt.Sprintf("held %d != open holds %d", held, holds))
		}
		if balance-held < 0 {
			why = append(why, fmt.Sprintf("available %d < 0", balance-held))
		}
		if !pendingUser[user] && runEntries != execSum[user] {
			why = append(why, fmt.Sprintf("this run's entries sum to %d but the processor moved %d", runEntries, execSum[user]))
		}
		if len(why) > 0 {
			bad++
			rep.example("pipeline-8", "user %d: %s", user, strings.Join(why, "; "))
		}
	}
	return bad, rows.Err()
}
