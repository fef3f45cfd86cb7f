// Package pacer paces the calls of one dispatcher replica to the payment
// processor. The processor's limit L is global; a replica takes the share of
// it that matches the share of partitions it owns, and adapts to what the
// processor answers: multiplicative decrease and a pause on 429 (or
// Retry-After), additive increase while calls succeed, capped at the share
// when L is known. When L is unknown the pacer starts low, grows
// multiplicatively until the first 429 (slow start) and then runs AIMD, which
// finds L and follows it when it changes.
//
// The token bucket is golang.org/x/time/rate with burst 1, so calls are
// spread evenly instead of bunched at the start of each second.
package pacer

import (
	"context"
	"github.com/finsvc/finance/pkg/clock"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Signal is what one processor call taught the pacer.
type Signal int

// The signals.
const (
	// OK is an answer from a processor with room: a payment result, a
	// decline, a rejection.
	OK Signal = iota
	// RateLimited is a 429, or the as-is API's 503 over capacity.
	RateLimited
	// Failed is a call that says nothing about the rate (timeouts, 5xx,
	// unreachable); the circuit breaker handles those.
	Failed
)

// Config configures a Pacer.
type Config struct {
	// Limit is the processor's global limit L in calls per second; 0 means
	// unknown, and the pacer probes for it.
	Limit float64
	// StartRate is the rate of the whole group when Limit is unknown;
	// zero means 50 per second.
	StartRate float64
	// MaxRate caps probing when Limit is unknown; zero means 100000.
	MaxRate float64
	// Decrease multiplies the rate on a 429; zero means 0.8.
	Decrease float64
	// Increase is the additive increase in calls per second, per second of
	// calls limited by the pacer; zero means 5 % of Limit (at least 1), or
	// 20 per second when Limit is unknown.
	Increase float64
	// MaxHold caps the pause a Retry-After asks for; zero means 30s.
	MaxHold time.Duration
	// Metrics receives the pacer's gauges; nil records nothing.
	Metrics *Metrics
	// Now replaces time.Now (tests).
	Now func() time.Time
}

// Pacer is safe for concurrent use.
type Pacer struct {
	cfg Config
	lim *rate.Limiter
	// ahead lets maxAhead calls at a time take slots (Wait); the others
	// wait their turn, in the order WithOrder gave them.
	ahead *turns

	mu sync.Mutex
	// fraction is the share of the topic's partitions this replica owns.
	fraction float64
	// rate is the current rate of this replica; ceiling caps it.
	rate      float64
	slowStart bool
	holdUntil time.Time
	// lastDecrease spaces decreases: the 429s of one overshoot arrive
	// together and must cut the rate once, not once per call.
	lastDecrease time.Time
	// limitedAt is the last time a call had to wait for a token: the rate
	// only grows while it is what holds calls back.
	limitedAt time.Time
	calls     window
}

// New returns a pacer that owns no partitions yet: it lets nothing through
// until SetShare is called.
func New(cfg Config) *Pacer {
	if cfg.StartRate <= 0 {
		cfg.StartRate = 50
	}
	if cfg.MaxRate <= 0 {
		cfg.MaxRate = 100000
	}
	if cfg.Decrease <= 0 || cfg.Decrease >= 1 {
		cfg.Decrease = 0.8
	}
	if cfg.Increase <= 0 {
		cfg.Increase = 20
		if cfg.Limit > 0 {
			cfg.Increase = max(cfg.Limit*0.05, 1)
		}
	}
	if cfg.MaxHold <= 0 {
		cfg.MaxHold = 30 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	cfg.Metrics.limit.Set(cfg.Limit)
	return &Pacer{cfg: cfg, lim: rate.NewLimiter(0, 1), ahead: newTurns(maxAhead), slowStart: cfg.Limit <= 0}
}

// SetShare records that this replica owns owned of the topic's total
// partitions and rescales its rate: with L known the rate becomes
// L × owned / total; with L unknown the probed rate is rescaled the same way,
// so that the replicas' rates still add up to what the group has learnt.
// It is called on every assignment and revocation.
func (p *Pacer) SetShare(owned, total int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f := 0.0
	if total > 0 {
		f = float64(min(owned, total)) / float64(total)
	}
	switch {
	case p.cfg.Limit > 0:
		p.rate = p.cfg.Limit * f
	case p.fraction > 0:
		p.rate = min(p.rate*f/p.fraction, p.cfg.MaxRate*f)
	default:
		p.rate = p.cfg.StartRate * f
	}
	p.fraction = f
	p.apply()
}

// ceiling is the most this replica may send: its share of L, or of MaxRate.
func (p *Pacer) ceiling() float64 {
	if p.cfg.Limit > 0 {
		return p.cfg.Limit * p.fraction
	}
	return p.cfg.MaxRate * p.fraction
}

// apply publishes p.rate to the limiter and the gauges; p.mu is held.
func (p *Pacer) apply() {
	p.lim.SetLimit(rate.Limit(p.rate))
	m := p.cfg.Metrics
	m.rate.Set(p.rate)
	m.share.Set(p.cfg.Limit * p.fraction)
	m.fraction.Set(p.fraction)
}

// Wait blocks until a call may be made: after any pause a 429 asked for,
// while this replica owns partitions, and when the token bucket has a token.
func (p *Pacer) Wait(ctx context.Context) error {
	if err := p.ahead.acquire(ctx); err != nil {
		return err
	}
	defer p.ahead.release()
	for retried := false; ; {
		p.mu.Lock()
		hold := p.holdUntil.Sub(p.cfg.Now())
		if p.rate <= 0 {
			// No partitions owned (a rebalance in progress): nothing may
			// be sent until a share is assigned.
			hold = max(hold, 50*time.Millisecond)
		}
		p.mu.Unlock()
		if hold > 0 {
			if err := clock.Sleep(ctx, hold); err != nil {
				return err
			}
			continue
		}
		r := p.lim.Reserve()
		delay := r.Delay()
		if delay > time.Hour {
			r.Cancel()
			continue // the rate dropped to 0 meanwhile
		}
		slot := time.Now().Add(delay)
		if err := clock.Sleep(ctx, delay); err != nil {
			r.Cancel()
			return err
		}
		// A call woken long after its slot was delayed by a stall of this
		// process; the calls of the slots after it woke with it. Sent now
		// they would reach the processor as one burst, so each takes a
		// fresh slot once.
		if late := time.Since(slot); late > lateTolerance && !retried {
			retried = true
			p.cfg.Metrics.lateSlots.Inc()
			continue
		}
		now := p.cfg.Now()
		p.mu.Lock()
		if delay > time.Millisecond {
			p.limitedAt = now
		}
		p.calls.add(now)
		p.mu.Unlock()
		return nil
	}
}

// lateTolerance is how late a call may wake for its slot and still go.
const lateTolerance = 50 * time.Millisecond

// maxAhead is how many calls hold a slot at once (Wait). Slots are taken
// in turn, so without a bound every call waiting on the pacer would hold
// one, in the order the calls came: with the dispatcher's 512 calls in
// flight at L = 300/s, slots 1.7 s ahead. The outcomes of a partition's
// records are produced in offset order, so a call that got a late slot
// (a user's next payment, which starts only when the previous one is
// done; a call woken late, which takes a fresh slot) held back every
// outcome after its record. With 32, the others wait their turn in order
// (WithOrder), and a late call waits for 31 slots at most, about 0.1 s at
// L = 300/s; the rate is the same, as each slot frees its place when its
// time comes.
const maxAhead = 32

// Observe adapts the rate to one call's answer. retryAfter is the
// processor's Retry-After (zero when absent).
func (p *Pacer) Observe(s Signal, retryAfter time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.cfg.Now()
	switch s {
	case RateLimited:
		p.cfg.Metrics.rateLimited.Inc()
		if retryAfter > 0 {
			if until := now.Add(min(retryAfter, p.cfg.MaxHold)); until.After(p.holdUntil) {
				p.holdUntil = until
			}
		}
		// One decrease per burst of 429s: they answer calls sent before
		// the last decrease took effect.
		if now.Sub(p.lastDecrease) < time.Second {
			return
		}
		p.lastDecrease = now
		p.slowStart = false
		p.rate = max(p.rate*p.cfg.Decrease, 1)
		p.apply()
	case OK:
		if p.fraction == 0 || now.Sub(p.limitedAt) > time.Second {
			return // not sending as fast as allowed: nothing learnt
		}
		ceil := p.ceiling()
		if p.rate >= ceil {
			return
		}
		// Per call, so that a second of calls at the current rate adds
		// Increase (additive) or grows the rate by about 65 % (slow start).
		if p.slowStart {
			p.rate += 0.5
		} else {
			p.rate += p.cfg.Increase * p.fraction / max(p.rate, 1)
		}
		p.rate = min(p.rate, ceil)
		p.apply()
	}
}

// Rate is the current rate of this replica in calls per second.
func (p *Pacer) Rate() float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rate
}

// Share is this replica's share of L (0 when L is unknown).
func (p *Pacer) Share() float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cfg.Limit * p.fraction
}

// CallRate is the measured rate of calls over the last window.
func (p *Pacer) CallRate() float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls.rate(p.cfg.Now())
}

// Report refreshes the measured call rate and utilization gauges every
// interval until ctx ends.
func (p *Pacer) Report(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		p.mu.Lock()
		r := p.calls.rate(p.cfg.Now())
		// Utilization is measured against what this replica may send:
		// its share of L, or the rate it has learnt when L is unknown.
		ref := p.cfg.Limit * p.fraction
		if ref <= 0 {
			ref = p.rate
		}
		p.mu.Unlock()
		p.cfg.Metrics.callRate.Set(r)
		if ref > 0 {
			p.cfg.Metrics.utilization.Set(r / ref)
		} else {
			p.cfg.Metrics.utilization.Set(0)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// window counts calls in one-second buckets over the last ten seconds.
type window struct {
	buckets [10]int
	second  int64 // the second of buckets[second%10]
	started time.Time
}

func (w *window) advance(now time.Time) {
	s := now.Unix()
	if w.started.IsZero() {
		w.started, w.second = now, s
		return
	}
	if s-w.second >= int64(len(w.buckets)) {
		w.buckets = [10]int{}
	} else {
		for i := w.second + 1; i <= s; i++ {
			w.buckets[i%int64(len(w.buckets))] = 0
		}
	}
	if s > w.second {
		w.second = s
	}
}

func (w *window) add(now time.Time) {
	w.advance(now)
	w.buckets[now.Unix()%int64(len(w.buckets))]++
}

// rate is calls per second over the complete seconds of the window.
func (w *window) rate(now time.Time) float64 {
	w.advance(now)
	if w.started.IsZero() {
		return 0
	}
	n, secs := 0, 0
	cur := now.Unix()
	for i := int64(1); i < int64(len(w.buckets)); i++ {
		if cur-i < w.started.Unix() {
			break // before the first call
		}
		n += w.buckets[(cur-i)%int64(len(w.buckets))]
		secs++
	}
	if secs == 0 {
		return 0
	}
	return float64(n) / float64(secs)
}
