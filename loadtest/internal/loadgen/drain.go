package loadgen

import (
	"context"
	"math"
	"time"

	"github.com/finsvc/finance/pkg/simclient"
)

// drain waits for the backlog to empty, or until only unknown payments are
// left and none resolves for 30 s, or the deadline.
func (r *runner) drain(ctx context.Context, d *Drain) {
	timeout := r.o.DrainTimeout
	if timeout <= 0 {
		_, _, ok := r.rec.Totals(Write)
		timeout = 60*time.Second + time.Duration(2*float64(ok)/max(r.o.Workload.Limit, 1)*float64(time.Second))
	}
	deadline := time.Now().Add(timeout)
	d.Deadline = math.Round(deadline.Sub(r.start).Seconds()*100) / 100
	var lastUnknown int64 = -1
	var unknownSince time.Time
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		b, err := r.o.Backlog.Backlog(qctx)
		cancel()
		if err == nil {
			d.UnknownLeft = b.Unknown
			if b.Pending()+b.Unknown == 0 {
				d.Drained = true
				d.DrainedAt = math.Round(time.Since(r.start).Seconds()*100) / 100
				return
			}
			// Only unknown payments left, and none resolved for a while:
			// nothing more will happen on its own.
			if b.Pending() == 0 {
				if b.Unknown != lastUnknown {
					lastUnknown, unknownSince = b.Unknown, time.Now()
				} else if time.Since(unknownSince) > 30*time.Second {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			d.TimedOut = true
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// drainStats fills res.Drain from the samples and the run's executions.
func drainStats(res *Result, limit float64, hasBacklog bool, start time.Time, execs []simclient.Execution) {
	d := &res.Drain
	d.Applicable = hasBacklog && (res.Workload.Burst || res.Workload.Outage != nil)
	peakIdx := -1
	for i, s := range res.Samples {
		if !s.NoBacklog && s.Backlog > d.Peak {
			d.Peak, d.PeakAt, peakIdx = s.Backlog, s.T, i
		}
	}
	if peakIdx < 0 {
		return
	}
	for _, s := range res.Samples[peakIdx:] {
		if !s.NoBacklog && s.Backlog == 0 {
			d.PendingDrained, d.PendingDrainedAt = true, s.T
			break
		}
	}
	if d.Drained && !d.PendingDrained {
		d.PendingDrained, d.PendingDrainedAt = true, d.DrainedAt
	}
	if !d.PendingDrained {
		return
	}
	// The processor's pace while it worked the backlog off: executions
	// between the peak and the empty backlog, by their own timestamps.
	lo := start.Add(time.Duration(d.PeakAt * float64(time.Second)))
	hi := start.Add(time.Duration(d.PendingDrainedAt * float64(time.Second)))
	var first, last time.Time
	n := 0
	for _, e := range execs {
		if e.ExecutedAt.Before(lo) || e.ExecutedAt.After(hi) {
			continue
		}
		if n == 0 || e.ExecutedAt.Before(first) {
			first = e.ExecutedAt
		}
		if n == 0 || e.ExecutedAt.After(last) {
			last = e.ExecutedAt
		}
		n++
	}
	d.Executions = n
	if n >= 2 && last.After(first) {
		d.ExecRate = math.Round(float64(n-1)/last.Sub(first).Seconds()*10) / 10
		if limit > 0 {
			d.RateOfLimit = math.Round(d.ExecRate/limit*1000) / 1000
		}
	}
}
