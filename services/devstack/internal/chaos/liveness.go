package chaos

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// counts returns the API payments accepted or processing, unknown, and
// final (succeeded or failed).
func counts(ctx context.Context, pool *pgxpool.Pool) (inflight, unknown, final int64, err error) {
	err = pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE status IN ('accepted','processing')),
		count(*) FILTER (WHERE status = 'unknown'), count(*) FILTER (WHERE status IN ('succeeded','failed'))
		FROM payments WHERE source = 'api'`).Scan(&inflight, &unknown, &final)
	return inflight, unknown, final, err
}

// stallMeter finds the longest time no payment became final while some
// were not final: a consumer group that stopped consuming shows here even
// when it recovers before the liveness deadline. The processor outage and
// a consumer's rejoin after a kill make stalls of their own; this is a
// figure of the report, not a pass condition.
type stallMeter struct {
	final    int64
	since    time.Time // when final last changed, or nothing was pending
	longest  time.Duration
	endedAt  time.Time // when the longest stall was last observed
	observed bool
}

func (m *stallMeter) observe(now time.Time, final, pending int64) {
	if !m.observed || final != m.final || pending == 0 {
		m.final, m.since, m.observed = final, now, true
		return
	}
	if d := now.Sub(m.since); d > m.longest {
		m.longest, m.endedAt = d, now
	}
}

// settle waits after the traffic until every payment is final and the
// outbox empty, and measures liveness. At rep.LivenessDeadline it counts the
// payments not final and lists the oldest 20. Past it, it waits on for
// accepted and processing payments until drainDeadline (so the report also
// says whether they drained late), leaving unknown ones to reconcile. It
// feeds stall all along.
func settle(ctx context.Context, pool *pgxpool.Pool, rep *Report, stall *stallMeter, drainDeadline time.Time, logf func(string, ...any)) error {
	drainDeadline = later(drainDeadline, rep.LivenessDeadline)
	lastLog := time.Now()
	for {
		inflight, unknown, final, err := counts(ctx, pool)
		var outbox int64
		if err == nil {
			err = pool.QueryRow(ctx, `SELECT count(*) FROM outbox`).Scan(&outbox)
		}
		now := time.Now()
		if err == nil {
			stall.observe(now, final, inflight+unknown)
		}
		if err == nil && !rep.LivenessChecked && !now.Before(rep.LivenessDeadline) {
			if err := nonFinalAt(ctx, pool, rep); err != nil {
				return err
			}
			logf("LIVENESS: %d payments not final %v after the last kill (or the end of the traffic)", rep.NonFinalAtDeadline, rep.Config.Liveness)
			for _, p := range rep.NonFinal {
				logf("  payment %d (user %d) %s, accepted %.0fs ago, unchanged for %.0fs", p.ID, p.UserID, p.Status, p.Age, p.Idle)
			}
		}
		if err == nil && inflight == 0 && unknown == 0 {
			at, ferr := lastFinal(ctx, pool)
			if ferr != nil {
				return ferr
			}
			if rep.AllFinalAt.IsZero() {
				logf("every payment is final (the last at +%.1fs)", at.Sub(rep.StartedAt).Seconds())
			}
			rep.AllFinalAt = at
			rep.LivenessChecked = true // before the deadline, or checked at it above
			if outbox == 0 {
				return nil
			}
		}
		if err == nil && inflight == 0 && outbox == 0 && rep.LivenessChecked {
			return nil // unknown payments are reconcile's
		}
		if now.After(drainDeadline) {
			logf("drain: %d payments accepted or processing, %d unknown, %d outbox rows at the drain deadline (err %v)", inflight, unknown, outbox, err)
			rep.DrainTimedOut = true
			return nil
		}
		if now.Sub(lastLog) >= 10*time.Second {
			logf("draining: %d accepted or processing, %d unknown, %d in the outbox", inflight, unknown, outbox)
			lastLog = now
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// lastFinal returns when the last payment became final: its updated_at,
// read as an age on the database's clock so that the two clocks need not
// agree.
func lastFinal(ctx context.Context, pool *pgxpool.Pool) (time.Time, error) {
	before := time.Now()
	var ago float64
	err := pool.QueryRow(ctx, `SELECT coalesce(extract(epoch FROM clock_timestamp() - max(updated_at)), 0)::float8
		FROM payments WHERE source = 'api' AND status IN ('succeeded','failed')`).Scan(&ago)
	if err != nil {
		return time.Time{}, fmt.Errorf("last final payment: %w", err)
	}
	return before.Add(time.Since(before) / 2).Add(-time.Duration(ago * float64(time.Second))), nil
}

// nonFinalAt records the payments not final at the liveness deadline.
func nonFinalAt(ctx context.Context, pool *pgxpool.Pool, rep *Report) error {
	rep.LivenessChecked = true
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM payments WHERE source = 'api' AND status NOT IN ('succeeded','failed')`).
		Scan(&rep.NonFinalAtDeadline); err != nil {
		return fmt.Errorf("non-final payments: %w", err)
	}
	rows, err := pool.Query(ctx, `SELECT id, user_id, status, extract(epoch FROM clock_timestamp() - created_at)::float8,
		extract(epoch FROM clock_timestamp() - updated_at)::float8
		FROM payments WHERE source = 'api' AND status NOT IN ('succeeded','failed') ORDER BY created_at, id LIMIT 20`)
	if err != nil {
		return fmt.Errorf("non-final payments: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var p nonFinal
		if err := rows.Scan(&p.ID, &p.UserID, &p.Status, &p.Age, &p.Idle); err != nil {
			return err
		}
		rep.NonFinal = append(rep.NonFinal, p)
	}
	return rows.Err()
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
