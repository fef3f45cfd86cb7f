package loadgen

import (
	"context"
	"math"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/finsvc/finance/loadtest/internal/target"
	"github.com/finsvc/finance/pkg/payment"
	"github.com/finsvc/finance/pkg/simclient"
)

// pollInterval is how often a client polls each of its pending payments.
const pollInterval = time.Second

// pollGrace is how long the pollers may go on after the drain, to see the
// last final statuses.
const pollGrace = 10 * time.Second

// Poll is what the status pollers saw of one accepted payment.
type Poll struct {
	UID       string
	StatusURL string
	Token     string
	// Status is the last status a poll returned.
	Status string
	// FinalSeenAt is when the first poll that saw the payment final
	// returned; UpdatedAt is the payment's updated_at in that answer: when
	// its final status was written.
	FinalSeenAt time.Time
	UpdatedAt   time.Time
	Polls       int
	Errors      int
}

// PollStats is what the pollers measured.
type PollStats struct {
	Pollers int `json:"pollers"`
	// Followed are the accepted payments the pollers polled; SeenFinal of
	// them were seen succeeded or failed.
	Followed   int   `json:"followed"`
	SeenFinal  int   `json:"seen_final"`
	Polls      int64 `json:"polls"`
	PollErrors int64 `json:"poll_errors"`
	// LastFinalAt is the latest updated_at of a final payment, in seconds
	// since the burst's start; LastSeenAt the latest first poll that saw
	// one final.
	LastFinalAt float64 `json:"last_final_at_s"`
	LastSeenAt  float64 `json:"last_seen_final_at_s"`
	// IdealDrain is N / L: the seconds the processor needs for the
	// followed payments at its limit; DrainOfIdeal is LastFinalAt / IdealDrain.
	IdealDrain   float64 `json:"ideal_drain_s"`
	DrainOfIdeal float64 `json:"drain_of_ideal"`
	// Executed are the payments seen final that the processor executed
	// (matched by their key payment-<uid>; a decline has no execution).
	Executed int `json:"executed"`
	// ServerVisible is updated_at of the final status minus the
	// execution's time; ClientVisible is the first poll that saw it final
	// minus the execution's time (it adds up to a poll interval).
	ServerVisible Percentiles `json:"answer_to_visible_server"`
	ClientVisible Percentiles `json:"answer_to_visible_client"`
}

type pollItem struct {
	write int
	due   time.Time
}

// startPollers starts n pollers; follow hands them an accepted payment and
// stop waits for them, cancelling those still polling after grace.
type pollers struct {
	in     []chan pollItem
	wg     sync.WaitGroup
	cancel context.CancelFunc
}

func (r *runner) startPollers(ctx context.Context, n, writes int) *pollers {
	pctx, cancel := context.WithCancel(ctx)
	p := &pollers{cancel: cancel}
	client := r.o.Poller
	if client == nil {
		client = r.o.Target
	}
	for range n {
		// Buffered for every payment it may get: follow never blocks.
		in := make(chan pollItem, writes/n+1)
		p.in = append(p.in, in)
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			r.pollLoop(pctx, client, in)
		}()
	}
	return p
}

// follow hands write to its poller, which polls it from a second on.
func (p *pollers) follow(write int) {
	p.in[write%len(p.in)] <- pollItem{write: write, due: time.Now().Add(pollInterval)}
}

// close tells the pollers no more payments come.
func (p *pollers) close() {
	for _, in := range p.in {
		close(in)
	}
}

// wait waits until the pollers saw every payment final, at most grace.
func (p *pollers) wait(grace time.Duration) {
	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
	}
	p.cancel()
	<-done
}

// pollLoop polls its payments in turn, each about once a second, until
// every one is final; a payment's next poll is due a second after its last.
func (r *runner) pollLoop(ctx context.Context, client *target.Client, in <-chan pollItem) {
	var queue []pollItem
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	open := true
	for open || len(queue) > 0 {
		if len(queue) == 0 {
			select {
			case it, ok := <-in:
				if !ok {
					open = false
				} else {
					queue = append(queue, it)
				}
			case <-ctx.Done():
				return
			}
			continue
		}
		if d := time.Until(queue[0].due); d > 0 {
			timer.Reset(d)
			select {
			case it, ok := <-in:
				timer.Stop()
				if !ok {
					open, in = false, nil
				} else {
					queue = append(queue, it)
				}
				continue
			case <-ctx.Done():
				return
			case <-timer.C:
			}
		}
		it := queue[0]
		queue = queue[1:]
		if !r.pollOnce(ctx, client, it.write) {
			it.due = time.Now().Add(pollInterval)
			queue = append(queue, it)
		}
	}
}

// pollOnce reads the payment's status and reports whether it is final.
func (r *runner) pollOnce(ctx context.Context, client *target.Client, write int) bool {
	p := &r.polls[write]
	st, resp := client.Status(ctx, p.Token, p.StatusURL)
	p.Polls++
	if resp.Class != target.OK || resp.Err != "" {
		p.Errors++
		return false
	}
	p.Status = st.Status
	if !payment.Status(st.Status).Final() {
		return false
	}
	p.FinalSeenAt, p.UpdatedAt = time.Now(), st.UpdatedAt
	return true
}

// pollStats summarises the polls against the executions: how long after
// the processor's answer each final status was written and seen, and
// when the last payment became final, against N / L.
func pollStats(pollers int, polls []Poll, execs []simclient.Execution, start time.Time, limit float64) PollStats {
	s := PollStats{Pollers: pollers}
	executed := map[string]time.Time{}
	for _, e := range execs {
		uid, ok := e.PaymentUID()
		if !ok {
			continue
		}
		// A payment executed twice (the checker's business) counts from
		// its first execution.
		if at, seen := executed[uid.String()]; !seen || e.Answer().Before(at) {
			executed[uid.String()] = e.Answer()
		}
	}
	server := hdrhistogram.New(histMin, histMax, 3)
	client := hdrhistogram.New(histMin, histMax, 3)
	var lastFinal, lastSeen time.Time
	for _, p := range polls {
		if p.StatusURL == "" {
			continue
		}
		s.Followed++
		s.Polls += int64(p.Polls)
		s.PollErrors += int64(p.Errors)
		if p.FinalSeenAt.IsZero() {
			continue
		}
		s.SeenFinal++
		if p.UpdatedAt.After(lastFinal) {
			lastFinal = p.UpdatedAt
		}
		if p.FinalSeenAt.After(lastSeen) {
			lastSeen = p.FinalSeenAt
		}
		at, ok := executed[p.UID]
		if !ok {
			continue
		}
		s.Executed++
		_ = server.RecordValue(clampUS(p.UpdatedAt.Sub(at)))
		_ = client.RecordValue(clampUS(p.FinalSeenAt.Sub(at)))
	}
	s.ServerVisible, s.ClientVisible = percentilesOf(server), percentilesOf(client)
	if !lastFinal.IsZero() {
		s.LastFinalAt = math.Round(lastFinal.Sub(start).Seconds()*100) / 100
		s.LastSeenAt = math.Round(lastSeen.Sub(start).Seconds()*100) / 100
	}
	if limit > 0 {
		s.IdealDrain = math.Round(float64(s.Followed)/limit*100) / 100
	}
	if s.IdealDrain > 0 {
		s.DrainOfIdeal = math.Round(s.LastFinalAt/s.IdealDrain*1000) / 1000
	}
	return s
}

// DrainGoal is the most a burst-poll's drain may take, as a multiple of
// N / L: every payment final within 1.15 × N/L of the burst's start.
const DrainGoal = 1.15

// DrainMet reports whether every followed payment was seen final within
// DrainGoal × N / L of the burst's start.
func (s PollStats) DrainMet() bool {
	return s.Followed > 0 && s.SeenFinal == s.Followed && s.IdealDrain > 0 && s.LastFinalAt <= DrainGoal*s.IdealDrain
}
