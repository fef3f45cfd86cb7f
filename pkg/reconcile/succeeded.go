package reconcile

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/finsvc/finance/pkg/verify"
)

// The check succeeded_not_executed compares every succeeded payment with
// the processor's statement: at 20,000,000 payments a sequential scan of
// 2.6 s every pass of a watching reconciler, which took a core from the
// requests every 30 s (docs/reads.md, "The reconciler's scans"). With a
// kept statement it is incremental instead: each pass compares only the
// (user, amount) groups where a payment succeeded in a payment_transitions
// row numbered above the watermark, read by the primary key.
//
// The watermark only moves past what an earlier pass saw. Each pass marks
// the highest transition id visible at its start, at the database's
// clock. A transition numbered at or below a mark was inserted before the
// mark, so it is committed CommitBound after it; a clean pass that starts
// later saw it, compared it if it was above that pass's watermark, and the
// passes before compared the rest. After such a clean pass the watermark
// moves to the newest mark at least CommitBound older than the pass. A
// pass that finds succeeded_not_executed violated leaves the watermark
// where it was, so the next passes find the same payments until they are
// resolved; a statement loaded whole (the first pass, after a failed one,
// or when the processor's statement changed) is compared whole.
// financectl verify always compares everything.

// succeededWatermark is how far succeeded_not_executed has been checked.
type succeededWatermark struct {
	after int64            // transitions up to this id are checked
	marks []transitionMark // the passes' marks, oldest first
	start time.Time        // the running pass's mark
}

// transitionMark is the highest transition id visible at an instant.
type transitionMark struct {
	at time.Time
	id int64
}

// begin marks the start of a pass on conn and returns the watermark the
// pass compares from.
func (w *succeededWatermark) begin(ctx context.Context, conn *pgx.Conn) (int64, error) {
	var m transitionMark
	if err := conn.QueryRow(ctx, `SELECT now(), coalesce(max(id), 0) FROM payment_transitions`).Scan(&m.at, &m.id); err != nil {
		return 0, fmt.Errorf("mark payment transitions: %w", err)
	}
	w.marks, w.start = append(w.marks, m), m.at
	return w.after, nil
}

// end moves the watermark after a pass that went through, if it found
// succeeded_not_executed clean.
func (w *succeededWatermark) end(rep Report, commitBound time.Duration) {
	if f, ok := (verify.Report{Findings: rep.Mismatches}).Finding(verify.SucceededNotExecuted); !ok || f.Count > 0 {
		return
	}
	settled := 0
	for _, m := range w.marks {
		if m.at.Add(commitBound).After(w.start) {
			break
		}
		w.after, settled = max(w.after, m.id), settled+1
	}
	w.marks = w.marks[settled:]
}
