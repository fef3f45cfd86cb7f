// Package loadgen runs one load test: it sends an open-model workload to a
// target, samples the processor and the backlog once a second, waits for
// the backlog to drain, runs the invariant checker and returns the result.
//
// Open model: request i is due at start + i/rate, and is sent then whatever
// happened to the earlier ones; its latency is measured from that intended
// time, so a slow system cannot slow the generator down and hide its own
// queueing (no coordinated omission).
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/finsvc/finance/loadtest/internal/check"
	"github.com/finsvc/finance/loadtest/internal/scenario"
	"github.com/finsvc/finance/loadtest/internal/target"
	"github.com/finsvc/finance/pkg/simclient"
)

// Merchants are paid in turn; they exist in both systems' demo data
// (financectl seed --demo, legacy seed).
var Merchants = []int64{4593, 5001, 5002, 5003, 5004, 5005}

// Backlogger reports the system's backlog: the pipeline's open payments.
// The as-is service has none besides its in-flight requests.
type Backlogger interface {
	Backlog(ctx context.Context) (check.Backlog, error)
}

// Checker runs the invariants after the run.
type Checker func(ctx context.Context, writes []check.Write, execs []simclient.Execution) (check.Report, error)

// Options configure a run.
type Options struct {
	RunID     string
	Workload  scenario.Workload
	Target    *target.Client
	Sim       *simclient.Client
	FirstUser int64
	// Tokens are the users' bearer tokens, by user index.
	Tokens []string
	// Backlog is nil for the as-is service.
	Backlog Backlogger
	Check   Checker
	// ExecBaseline is the simulator's execution count before the run.
	ExecBaseline int64
	// DrainTimeout bounds the wait for the backlog after the load; zero
	// picks 60 s plus twice the time the processor needs for the run's
	// payments at its limit.
	DrainTimeout time.Duration
	// Workers is how many requests may be in flight at once (the
	// connection limit); more wait their turn, their latency still counting
	// from their intended time.
	Workers  int
	Progress func(Status)
	// AfterDrain, when set, is called once the load and the drain are over,
	// before the checker runs (whose own queries are not the system's work).
	AfterDrain func()
}

// Status is the live state shown by the progress line.
type Status struct {
	Phase    string
	Elapsed  time.Duration
	Total    time.Duration
	Sent     int64
	OK       int64
	Failed   int64
	InFlight int64
	WriteP99 float64
	ReadP99  float64
	Backlog  int64
	Unknown  int64
	ProcRate float64
	Limit    float64
}

// Sample is one second of the system's state, by wall-clock time.
type Sample struct {
	T     float64 `json:"t"`
	Phase string  `json:"phase"`
	// Processor calls and executions per second (the simulator's counters).
	ProcCalls       float64 `json:"proc_calls_per_s"`
	ProcExecuted    float64 `json:"proc_executed_per_s"`
	ProcRateLimited float64 `json:"proc_rate_limited_per_s"`
	ProcOutage      float64 `json:"proc_outage_rejected_per_s"`
	OutageActive    bool    `json:"outage_active"`
	// Backlog: the pipeline's accepted + processing payments of the run;
	// the as-is service's payments in flight (it has no queue).
	Backlog int64 `json:"backlog"`
	Unknown int64 `json:"unknown"`
	// NoBacklog marks a sample whose backlog could not be read (the
	// database did not answer in time): Backlog and Unknown mean nothing.
	NoBacklog bool `json:"no_backlog,omitempty"`
	// NoProcessor marks a sample whose processor counters could not be
	// read; its rates are then averaged into the next sample.
	NoProcessor bool `json:"no_processor,omitempty"`
	// InFlight are the generator's requests awaiting an answer.
	InFlight int64 `json:"in_flight"`
	// WritesOK and ReadsOK are the 2xx answers that arrived this second.
	WritesOK float64 `json:"writes_ok_per_s"`
	ReadsOK  float64 `json:"reads_ok_per_s"`
	Err      string  `json:"err,omitempty"`
}

// OutageWindow is when the processor was down, in seconds since the start.
type OutageWindow struct {
	Start float64 `json:"start_s"`
	End   float64 `json:"end_s"`
	Err   string  `json:"err,omitempty"`
}

// Drain is how the backlog emptied after a burst or an outage.
type Drain struct {
	Applicable bool    `json:"applicable"`
	Peak       int64   `json:"peak_backlog"`
	PeakAt     float64 `json:"peak_at_s"`
	// PendingDrained: no payment accepted or processing any more, at
	// PendingDrainedAt (the first sample after the peak).
	PendingDrained   bool    `json:"pending_drained"`
	PendingDrainedAt float64 `json:"pending_drained_at_s"`
	// Drained: nothing open at all, unknown payments included.
	Drained     bool    `json:"drained"`
	DrainedAt   float64 `json:"drained_at_s"`
	UnknownLeft int64   `json:"unknown_left"`
	TimedOut    bool    `json:"timed_out"`
	Deadline    float64 `json:"deadline_s"`
	// ExecRate is the processor's executions per second from the peak
	// until the pending backlog was empty, from the executions' own
	// timestamps; RateOfLimit is ExecRate / L.
	ExecRate    float64 `json:"exec_rate_per_s"`
	RateOfLimit float64 `json:"rate_of_limit"`
	// Executions counted in that window.
	Executions int `json:"executions_in_window"`
}

// Result is everything a run measured, before the report adds goals.
type Result struct {
	RunID       string            `json:"run_id"`
	StartedAt   time.Time         `json:"started_at"`
	LoadEndedAt time.Time         `json:"load_ended_at"`
	EndedAt     time.Time         `json:"ended_at"`
	Workload    scenario.Workload `json:"workload"`
	Writes      OpSummary         `json:"writes"`
	Reads       OpSummary         `json:"reads"`
	// SendLag is how late the generator sent requests after their
	// intended time: waiting for a free connection (--max-conns) and for
	// the CPU, which it shares with the target on one machine.
	SendLag Percentiles `json:"send_lag"`
	// GeneratorCPU is the CPU time the load generator itself used during
	// the load and drain, in seconds.
	GeneratorCPU float64 `json:"generator_cpu_seconds"`
	// Seconds are the buckets of BucketSeconds each.
	BucketSeconds float64       `json:"bucket_seconds"`
	Seconds       []Second      `json:"seconds"`
	Samples       []Sample      `json:"samples"`
	Outage        *OutageWindow `json:"outage,omitempty"`
	Drain         Drain         `json:"drain"`
	Check         check.Report  `json:"check"`
	CheckErr      string        `json:"check_error,omitempty"`
}

type event struct {
	i        int
	intended time.Time
	user     int // index
	write    int // index into writes, -1 for a read
}

type runner struct {
	o        Options
	start    time.Time
	rec      *Recorder
	writes   []check.Write
	inflight [2]atomic.Int64
	wg       sync.WaitGroup

	mu      sync.Mutex
	samples []Sample
	phase   string
}

// Run runs the workload until it, the drain and the checks are done, or
// ctx ends (then it returns what it has, with ctx's error).
func Run(ctx context.Context, o Options) (*Result, error) {
	w := o.Workload
	if len(o.Tokens) < w.Users {
		return nil, fmt.Errorf("want %d tokens, have %d", w.Users, len(o.Tokens))
	}
	if o.Workers <= 0 {
		o.Workers = 1000
	}
	nw := 0
	for i := range w.Requests() {
		if !w.IsRead(i) {
			nw++
		}
	}
	r := &runner{o: o, writes: make([]check.Write, nw), phase: "load"}
	r.start = time.Now().Add(100 * time.Millisecond).Truncate(time.Millisecond)
	width := time.Second
	if w.Duration <= 10*time.Second {
		width = 100 * time.Millisecond
	}
	r.rec = NewRecorder(r.start, width)
	res := &Result{RunID: o.RunID, StartedAt: r.start, Workload: w}
	cpu0 := cpuSeconds()

	sampleCtx, stopSampling := context.WithCancel(context.WithoutCancel(ctx))
	samplerDone := make(chan struct{})
	go func() { defer close(samplerDone); r.sample(sampleCtx) }()
	defer func() { stopSampling(); <-samplerDone }()

	outageDone := make(chan struct{})
	if w.Outage != nil {
		res.Outage = &OutageWindow{}
		go func() { defer close(outageDone); r.outage(ctx, res.Outage) }()
	} else {
		close(outageDone)
	}

	// Long-lived workers send the requests: a goroutine per request would
	// spend the generator's CPU growing fresh stacks.
	events := make(chan event, 1<<16)
	for range min(o.Workers, w.Requests()) {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			for ev := range events {
				r.fire(ctx, ev)
			}
		}()
	}
	err := r.schedule(ctx, events)
	close(events)
	res.LoadEndedAt = time.Now()
	r.setPhase("settle")
	// Every request has its own timeout: the last answers come within it.
	r.wg.Wait()
	<-outageDone

	if err == nil && o.Backlog != nil {
		r.setPhase("drain")
		r.drain(ctx, &res.Drain)
	}
	if err == nil {
		err = ctx.Err()
	}
	stopSampling()
	<-samplerDone

	res.Writes, res.Reads, res.Seconds, res.SendLag = r.rec.Summary(w.Duration)
	res.Samples = r.samples
	res.BucketSeconds = width.Seconds()
	res.GeneratorCPU = math.Round((cpuSeconds()-cpu0)*100) / 100
	if o.AfterDrain != nil {
		o.AfterDrain()
	}
	var execs []simclient.Execution
	if err == nil {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
		defer cancel()
		var xerr error
		execs, xerr = o.Sim.ExecutionsAfter(cctx, o.ExecBaseline)
		if xerr != nil {
			res.CheckErr = xerr.Error()
		} else if rep, cerr := o.Check(cctx, r.writes, execs); cerr != nil {
			res.CheckErr = cerr.Error()
		} else {
			res.Check = rep
		}
	}
	drainStats(res, w.Limit, o.Backlog != nil, r.start, execs)
	res.EndedAt = time.Now()
	return res, err
}

// schedule sends every request at its intended time.
func (r *runner) schedule(ctx context.Context, events chan<- event) error {
	w := r.o.Workload
	n := w.Requests()
	interval := float64(time.Second) / w.Rate
	writesPerUser := make([]int64, w.Users)
	nextWrite := 0
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	for i := range n {
		intended := r.start.Add(time.Duration(float64(i) * interval))
		if d := time.Until(intended); d > 0 {
			timer.Reset(d)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-timer.C:
			}
		} else if ctx.Err() != nil {
			return ctx.Err()
		}
		ev := event{i: i, intended: intended, user: i % w.Users, write: -1}
		if !w.IsRead(i) {
			u := ev.user
			// Each of a user's payments in a run has its own amount, so
			// (user, amount) names one request even where the processor's
			// as-is API carries no key.
			amount := -(100 + writesPerUser[u])
			writesPerUser[u]++
			ev.write = nextWrite
			nextWrite++
			r.writes[ev.write] = check.Write{
				UserID: r.o.FirstUser + int64(u),
				Amount: amount,
				Key:    r.o.RunID + "-" + strconv.Itoa(i),
			}
		}
		select {
		case events <- ev:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (r *runner) fire(ctx context.Context, ev event) {
	op := Read
	if ev.write >= 0 {
		op = Write
	}
	r.inflight[op].Add(1)
	defer r.inflight[op].Add(-1)
	r.rec.Sent(op, ev.intended, time.Now())
	tok := r.o.Tokens[ev.user]
	user := r.o.FirstUser + int64(ev.user)
	var resp target.Response
	if op == Write {
		wr := &r.writes[ev.write]
		resp = r.o.Target.Pay(ctx, tok, target.Payment{
			UserID: user, MerchantID: Merchants[ev.i%len(Merchants)], Amount: wr.Amount, Key: wr.Key,
		})
		wr.Code, wr.Class, wr.PaymentID = resp.Code, resp.Class, resp.PaymentID
	} else {
		resp = r.o.Target.Feed(ctx, tok, user)
	}
	r.rec.Done(op, ev.intended, time.Now(), resp)
}

func (r *runner) outage(ctx context.Context, win *OutageWindow) {
	out := r.o.Workload.Outage
	t := time.NewTimer(time.Until(r.start.Add(out.At)))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return
	case <-t.C:
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	at := math.Round(time.Since(r.start).Seconds()*1000) / 1000
	err := r.o.Sim.StartOutage(cctx, out.Duration)
	r.mu.Lock()
	defer r.mu.Unlock()
	win.Start, win.End = at, at+out.Duration.Seconds()
	if err != nil {
		win.Err = err.Error()
	}
}

func (r *runner) setPhase(p string) {
	r.mu.Lock()
	r.phase = p
	r.mu.Unlock()
}

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

// sample records the processor's rates and the backlog once a second.
func (r *runner) sample(ctx context.Context) {
	prevT := time.Now()
	prev, _ := r.o.Sim.Stats(ctx)
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

// cpuSeconds is the CPU time this process has used.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

func rate(n int64, dt float64) float64 {
	if dt <= 0 {
		return 0
	}
	return math.Round(float64(n)/dt*10) / 10
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
