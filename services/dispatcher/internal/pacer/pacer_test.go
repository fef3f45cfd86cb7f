package pacer

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"
)

// fakeClock is a settable time source.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

// bundle is what a pacer test needs besides the pacer: its clock.
type bundle struct {
	clock *fakeClock
}

// setup returns a pacer with cfg on a fake clock.
func setup(t *testing.T, cfg Config) (*Pacer, *bundle) {
	t.Helper()
	b := &bundle{clock: &fakeClock{t: time.Unix(1_000_000, 0)}}
	cfg.Now = b.clock.now
	return New(cfg), b
}

// succeed reports n successful calls made while the pacer held calls back.
func succeed(p *Pacer, n int) {
	for range n {
		p.mu.Lock()
		p.limitedAt = p.cfg.Now()
		p.mu.Unlock()
		p.Observe(OK, 0)
	}
}

func TestShareIsLimitTimesPartitionFraction(t *testing.T) {
	t.Parallel()
	tests := []struct {
		owned, total int
		want         float64
	}{
		{12, 12, 300},
		{6, 12, 150},
		{5, 12, 125},
		{7, 12, 175},
		{1, 12, 25},
		{0, 12, 0},
	}
	for _, tt := range tests {
		p, _ := setup(t, Config{Limit: 300})
		p.SetShare(tt.owned, tt.total)
		if got := p.Rate(); math.Abs(got-tt.want) > 1e-9 {
			t.Errorf("SetShare(%d, %d): rate %v, want %v", tt.owned, tt.total, got, tt.want)
		}
		if got := p.Share(); math.Abs(got-tt.want) > 1e-9 {
			t.Errorf("SetShare(%d, %d): share %v, want %v", tt.owned, tt.total, got, tt.want)
		}
	}
}

func TestSharesOfReplicasSumToLimitAcrossRebalances(t *testing.T) {
	t.Parallel()
	a, _ := setup(t, Config{Limit: 300})
	b, _ := setup(t, Config{Limit: 300})
	// B joins, takes some partitions, leaves again; A's share is cut
	// (revoke) before B's grows (assign), as the group does it.
	steps := []struct{ a, b int }{{12, 0}, {7, 0}, {7, 5}, {6, 6}, {12, 0}}
	for _, s := range steps {
		a.SetShare(s.a, 12)
		b.SetShare(s.b, 12)
		if sum := a.Rate() + b.Rate(); sum > 300+1e-9 || (s.a+s.b == 12 && math.Abs(sum-300) > 1e-9) {
			t.Errorf("A owns %d, B owns %d: rates %v + %v = %v, want 300 when every partition is owned and never more", s.a, s.b, a.Rate(), b.Rate(), sum)
		}
	}
}

func TestRateLimitedDecreasesOnceAndHolds(t *testing.T) {
	t.Parallel()
	p, b := setup(t, Config{Limit: 300})
	p.SetShare(12, 12)
	p.Observe(RateLimited, 2*time.Second)
	if got := p.Rate(); got != 240 {
		t.Errorf("after a 429: rate %v, want 300 x 0.8 = 240", got)
	}
	// The rest of the burst of 429s answers calls sent before the decrease.
	p.Observe(RateLimited, time.Second)
	p.Observe(RateLimited, time.Second)
	if got := p.Rate(); got != 240 {
		t.Errorf("after more 429s within a second: rate %v, want still 240", got)
	}
	b.clock.advance(1500 * time.Millisecond)
	p.Observe(RateLimited, time.Second)
	if got := p.Rate(); got != 192 {
		t.Errorf("after a 429 a second later: rate %v, want 240 x 0.8 = 192", got)
	}

	// Retry-After holds every call.
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if err := p.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait during Retry-After = %v, want to be held until the context ends", err)
	}
}

func TestAdditiveIncreaseUpToShare(t *testing.T) {
	t.Parallel()
	p, b := setup(t, Config{Limit: 300})
	p.SetShare(6, 12) // share 150, increase 15/s for the whole group: 7.5/s here
	p.Observe(RateLimited, 0)
	if got := p.Rate(); got != 120 {
		t.Fatalf("rate %v, want 120", got)
	}
	// One second of calls at the current rate adds about Increase x fraction.
	succeed(p, 120)
	if got := p.Rate(); got < 127 || got > 128 {
		t.Errorf("after one second of successes: rate %v, want about 127.5", got)
	}
	succeed(p, 100000)
	if got := p.Rate(); got != 150 {
		t.Errorf("after many successes: rate %v, want capped at the share 150", got)
	}
	// Successes while the pacer is not what holds calls back teach nothing.
	p.Observe(RateLimited, 0)
	b.clock.advance(5 * time.Second)
	before := p.Rate()
	p.Observe(OK, 0)
	if got := p.Rate(); got != before {
		t.Errorf("success with no waiting calls changed the rate from %v to %v", before, got)
	}
}

func TestUnknownLimitStartsLowAndProbes(t *testing.T) {
	t.Parallel()
	p, _ := setup(t, Config{StartRate: 50})
	p.SetShare(12, 12)
	if got := p.Rate(); got != 50 {
		t.Fatalf("start rate %v, want 50", got)
	}
	// Slow start: grows by about half of each second's calls.
	succeed(p, 50)
	if got := p.Rate(); got != 75 {
		t.Errorf("after 50 successes in slow start: rate %v, want 75", got)
	}
	succeed(p, 2000)
	high := p.Rate()
	if high < 1000 {
		t.Errorf("slow start reached only %v", high)
	}
	// The first 429 ends slow start; then the increase is additive.
	p.Observe(RateLimited, 0)
	after := p.Rate()
	if after != high*0.8 {
		t.Errorf("after the first 429: rate %v, want %v", after, high*0.8)
	}
	succeed(p, int(after))
	if got := p.Rate(); got-after < 19 || got-after > 21 {
		t.Errorf("one second of successes after the 429 added %v, want about 20 (additive)", got-after)
	}
	// Rebalance rescales what was learnt.
	r := p.Rate()
	p.SetShare(6, 12)
	if got := p.Rate(); math.Abs(got-r/2) > 1e-9 {
		t.Errorf("after losing half the partitions: rate %v, want %v", got, r/2)
	}
}

func TestCallRateWindow(t *testing.T) {
	t.Parallel()
	var w window
	start := time.Unix(2_000_000, 0)
	for s := range 5 {
		for i := range 100 {
			w.add(start.Add(time.Duration(s)*time.Second + time.Duration(i)*10*time.Millisecond))
		}
	}
	if got := w.rate(start.Add(5 * time.Second)); got != 100 {
		t.Errorf("rate after 5 seconds at 100/s = %v, want 100", got)
	}
	if got := w.rate(start.Add(30 * time.Second)); got != 0 {
		t.Errorf("rate after a long pause = %v, want 0", got)
	}
}
