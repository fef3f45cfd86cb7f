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
	"fmt"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/finsvc/finance/loadtest/internal/check"
	"github.com/finsvc/finance/loadtest/internal/hostcpu"
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
	// Poller is the status pollers' own client (its own connections);
	// nil polls through Target.
	Poller *target.Client
	// AfterDrain, when set, is called once the load and the drain are over,
	// before the checker runs (whose own queries are not the system's work).
	AfterDrain func()
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
	polls    []Poll
	pollers  *pollers
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
	cpu0 := CPUSeconds()
	steal := hostcpu.NewMeter()

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
	if w.Pollers > 0 {
		r.polls = make([]Poll, nw)
		r.pollers = r.startPollers(ctx, w.Pollers, nw)
	}
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
	if r.pollers != nil {
		r.pollers.close()
	}

	if err == nil && o.Backlog != nil {
		r.setPhase("drain")
		r.drain(ctx, &res.Drain)
	}
	if r.pollers != nil {
		grace := pollGrace
		if err != nil {
			grace = 0
		}
		r.pollers.wait(grace)
	}
	if err == nil {
		err = ctx.Err()
	}
	stopSampling()
	<-samplerDone

	res.Writes, res.Reads, res.Seconds, res.SendLag = r.rec.Summary(w.Duration)
	res.Samples = r.samples
	res.BucketSeconds = width.Seconds()
	res.GeneratorCPU = math.Round((CPUSeconds()-cpu0)*100) / 100
	if share, err := steal.Next(); err == nil {
		res.MachineSteal = &share
	}
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
	if r.pollers != nil {
		ps := pollStats(w.Pollers, r.polls, execs, r.start, w.Limit)
		res.Poll = &ps
	}
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
			if w.Credits {
				amount = -amount
			}
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
		if r.pollers != nil && resp.Class == target.OK && resp.StatusURL != "" {
			r.polls[ev.write] = Poll{UID: resp.PaymentUID, StatusURL: resp.StatusURL, Token: tok}
			r.pollers.follow(ev.write)
		}
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

// CPUSeconds is the CPU time this process (the generator) has used.
func CPUSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}
