package loadgen

import (
	"context"
	"errors"
	"math"
	"time"

	"github.com/finsvc/finance/loadtest/internal/hostcpu"
)

// sample records the processor's rates and the backlog once a second.
func (r *runner) sample(ctx context.Context) {
	prevT := time.Now()
	prev, _ := r.o.Sim.Stats(ctx)
	steal := hostcpu.NewMeter()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := time.Now()
		s := Sample{T: math.Round(now.Sub(r.start).Seconds()*100) / 100}
		r.mu.Lock()
		s.Phase = r.phase
		r.mu.Unlock()

		// Generous bounds: on a saturated machine a sample is late rather
		// than missing; missed ticks are dropped.
		qctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		st, err := r.o.Sim.Stats(qctx)
		cancel()
		dt := now.Sub(prevT).Seconds()
		var errs []error
		if err == nil {
			s.ProcCalls = rate(st.Calls-prev.Calls, dt)
			s.ProcExecuted = rate(st.Executed-prev.Executed, dt)
			s.ProcRateLimited = rate(st.RateLimited-prev.RateLimited, dt)
			s.ProcOutage = rate(st.OutageRejected-prev.OutageRejected, dt)
			s.OutageActive = st.OutageUntil != nil && st.OutageUntil.After(now)
			prev, prevT = st, now
		} else {
			s.NoProcessor = true
			errs = append(errs, err)
		}
		s.Steal, _ = steal.Next() // 0 when /proc/stat cannot be read
		s.InFlight = r.inflight[Write].Load() + r.inflight[Read].Load()
		if r.o.Backlog != nil {
			qctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			b, err := r.o.Backlog.Backlog(qctx)
			cancel()
			if err == nil {
				s.Backlog, s.Unknown = b.Pending(), b.Unknown
			} else {
				s.NoBacklog = true
				if !errors.Is(err, context.Canceled) {
					errs = append(errs, err)
				}
			}
		} else {
			s.Backlog = r.inflight[Write].Load()
		}
		// The 2xx answers of the last full second.
		for b := r.rec.Bucket(now.Add(-time.Second)); b < r.rec.Bucket(now); b++ {
			s.WritesOK += float64(r.rec.OKAt(Write, b))
			s.ReadsOK += float64(r.rec.OKAt(Read, b))
		}
		if len(errs) > 0 {
			s.Err = errors.Join(errs...).Error()
		}
		r.rec.Fold(r.rec.Bucket(now) - 1)

		r.mu.Lock()
		r.samples = append(r.samples, s)
		r.mu.Unlock()
		if r.o.Progress != nil {
			r.o.Progress(r.status(s))
		}
	}
}

func (r *runner) status(s Sample) Status {
	ws, wd, wok := r.rec.Totals(Write)
	rs, rd, rok := r.rec.Totals(Read)
	wp99, _ := r.rec.Live(Write)
	rp99, _ := r.rec.Live(Read)
	return Status{
		Phase: s.Phase, Elapsed: time.Duration(s.T * float64(time.Second)), Total: r.o.Workload.Duration,
		Sent: ws + rs, OK: wok + rok, Failed: (wd - wok) + (rd - rok), InFlight: s.InFlight,
		WriteP99: wp99, ReadP99: rp99, Backlog: s.Backlog, Unknown: s.Unknown, ProcRate: s.ProcExecuted,
		Limit: r.o.Workload.Limit,
	}
}

func rate(n int64, dt float64) float64 {
	if dt <= 0 {
		return 0
	}
	return math.Round(float64(n)/dt*10) / 10
}
