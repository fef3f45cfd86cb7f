package check

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/finsvc/finance/loadtest/internal/target"
	"github.com/finsvc/finance/pkg/simclient"
)

// Legacy checks the as-is service's database (payments (id, amount,
// user_id, merchant_id, timestamp)) and the client's view against the
// processor. The as-is API carries no key, so payments are matched by user
// and amount, which the load generator keeps unique per user and run.
type Legacy struct {
	pool      *pgxpool.Pool
	firstUser int64
	lastUser  int64
}

// NewLegacy returns the checker of a run over users firstUser..lastUser.
func NewLegacy(pool *pgxpool.Pool, firstUser, lastUser int64) *Legacy {
	return &Legacy{pool: pool, firstUser: firstUser, lastUser: lastUser}
}

// MaxPaymentID returns the highest payment id, the run's baseline: the
// run's rows are the ones above it.
func (l *Legacy) MaxPaymentID(ctx context.Context) (int64, error) {
	var id int64
	if err := l.pool.QueryRow(ctx, `SELECT COALESCE(max(id), 0) FROM payments`).Scan(&id); err != nil {
		return 0, fmt.Errorf("read the as-is payments table: %w", err)
	}
	return id, nil
}

// Check compares the client's view (writes), the rows stored after
// baselineID and the processor's executions after the run began (execs).
func (l *Legacy) Check(ctx context.Context, baselineID int64, writes []Write, execs []simclient.Execution) (Report, error) {
	rep := Report{Target: string(target.Legacy)}
	rows, err := l.pool.Query(ctx, `SELECT user_id, amount FROM payments
		WHERE id > $1 AND user_id BETWEEN $2 AND $3`, baselineID, l.firstUser, l.lastUser)
	if err != nil {
		return rep, fmt.Errorf("read the run's payments: %w", err)
	}
	stored, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (userAmount, error) {
		var ua userAmount
		err := r.Scan(&ua.user, &ua.amount)
		return ua, err
	})
	if err != nil {
		return rep, fmt.Errorf("read the run's payments: %w", err)
	}
	recorded := map[userAmount]int{}
	recordedSum := map[int64]int64{}
	for _, s := range stored {
		recorded[s]++
		recordedSum[s.user] += s.amount
	}
	executed := map[userAmount]int{}
	executedSum := map[int64]int64{}
	for _, e := range execs {
		// The as-is service calls the as-is API; a pipeline payment
		// still settling from an earlier run is not this run's.
		if e.UserID < l.firstUser || e.UserID > l.lastUser || (e.API != "" && e.API != "as-is") {
			continue
		}
		rep.Executions++
		executed[userAmount{e.UserID, e.Amount}]++
		executedSum[e.UserID] += e.Amount
	}

	requested := map[userAmount]bool{}
	for _, w := range writes {
		rep.Requests++
		ua := userAmount{w.UserID, w.Amount}
		requested[ua] = true
		n := executed[ua]
		if w.Class == target.OK {
			rep.ToldOK++
			if n == 0 {
				rep.ToldOKNotExecuted++
				rep.example("legacy-1", "user %d amount %d: told succeeded (%d) but the processor has no execution", w.UserID, w.Amount, w.Code)
			}
		} else {
			rep.ToldFailed++
			if n > 0 {
				rep.ExecutedToldFailed++
				rep.example("legacy-2", "user %d amount %d: the processor executed it, the client was told %s (%d)", w.UserID, w.Amount, w.Class, w.Code)
			}
			if unresolved(w) {
				rep.Unresolved++
				if n > 0 {
					rep.UnresolvedExecuted++
				}
			}
		}
	}
	for ua, n := range executed {
		if n > 1 {
			rep.PaidTwice++
			rep.example("legacy-3", "user %d amount %d was executed %d times", ua.user, ua.amount, n)
		}
		if !requested[ua] {
			rep.OrphanExecutions++
			rep.example("legacy-4", "processor execution for user %d amount %d matches no request of the run", ua.user, ua.amount)
		}
		if recorded[ua] < n {
			rep.ExecutedNotRecorded += int64(n - recorded[ua])
		}
	}
	for ua, n := range recorded {
		if executed[ua] < n {
			rep.RecordedNotExecuted += int64(n - executed[ua])
			rep.example("legacy-5", "user %d amount %d is stored but the processor never executed it", ua.user, ua.amount)
		}
	}
	// Money moved without a record, or a success without money moving:
	// either way the user's payment is not what they were told.
	rep.Lost = rep.ExecutedNotRecorded + rep.ToldOKNotExecuted
	users := map[int64]bool{}
	for u := range recordedSum {
		users[u] = true
	}
	for u := range executedSum {
		users[u] = true
	}
	for u := range users {
		if recordedSum[u] != executedSum[u] {
			rep.BalanceMismatch++
			rep.example("legacy-6", "user %d: the feed's balance moved by %d, the processor moved %d", u, recordedSum[u], executedSum[u])
		}
	}
	rep.Notes = append(rep.Notes,
		"The as-is service has no pending state, so nothing can be stuck; its equivalent is the unresolved requests: "+
			"timeouts, 502/504 and dropped connections, whose outcome the client cannot learn (the as-is API has no key to ask with).",
		"Lost counts payments the processor executed that the as-is database does not hold: the user's money moved, their feed does not show it.")
	return rep, nil
}
