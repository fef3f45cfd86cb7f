// Package inflight bounds how many requests one client address has in
// progress at once, with a window that opens as the address's requests are
// served and stays narrow while they are refused.
//
// Why: a client that opens hundreds of connections at once and sends a
// request on each puts hundreds of goroutines in the gateway's run queue,
// and their statements in PostgreSQL's, before a single one is answered.
// Until that address has overdrawn its budget of refusals and is blocked
// (internal/abuse), other users' requests wait behind all of them
// (docs/security.md, "Hostile client"). A rate limit does not help: it
// counts requests over a second, not how many arrive in the same
// millisecond. So each address may have at most its window's worth of
// requests in progress; the others wait, parked and in arrival order, for
// a slot. A parked request costs no CPU.
//
// The window begins at Start for an address with nothing in progress. It
// grows by one for each request served (a status below 400), up to Max,
// and halves, not below Start, for each one refused (4xx); a server error
// changes nothing. So a working client, however many connections it opens,
// doubles its window every round trip, as TCP's slow start does, while a
// client whose requests are mostly refused keeps Start. An address with
// nothing in progress and nobody waiting keeps only its window, in a
// least-recently-used cache of MaxKeys addresses: a working client that
// pauses between requests (most do) keeps the window it earned, and one
// forgotten begins again at Start. (Forgetting the window at every pause,
// as TCP does after an idle spell, was tried: a client whose requests
// seldom overlap then had a window of Start at the very moment a stall of
// the server made them pile up, and waited behind its own requests.)
//
// A request waits at most Wait for its slot; then the caller refuses it.
// The address is the peer's, as the per-address rate limit's
// (ratelimit.AddrKey): behind a proxy every client shares the proxy's, so
// there Max must be the proxy's share, or the limit off.
package inflight

import (
	"context"
	"errors"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/prometheus/client_golang/prometheus"
)

// Policy is each address's window of requests in progress.
type Policy struct {
	// Start is the window of an address with nothing in progress; Max the
	// widest it grows. A zero Start or Max turns the limit off.
	Start, Max int
	// Wait is how long a request waits for a slot before it is refused.
	Wait time.Duration
}

// DefaultMaxKeys is how many idle addresses' windows a Limiter keeps when
// New is given no bound.
const DefaultMaxKeys = 100_000

// DefaultPolicy: 8 at first, as many as a browser's connections to one
// host (6) and a few more; 1,024 at most, which on two cores is more than
// the gateway works on at once at its saturation (docs/reads.md), so a
// working client's throughput is never what limits it; a request waits 10 s
// at most, the gateway's request timeout.
var DefaultPolicy = Policy{Start: 8, Max: 1024, Wait: 10 * time.Second}

// Enabled reports whether the policy limits anything.
func (p Policy) Enabled() bool { return p.Start > 0 && p.Max > 0 }

// ErrWaitedTooLong is Acquire's error when Wait passed without a slot.
var ErrWaitedTooLong = errors.New("waited too long for a slot among this address's requests in progress")

// Limiter applies a Policy. A nil *Limiter limits nothing; its methods are
// safe to call.
type Limiter struct {
	policy Policy

	mu      sync.Mutex
	addrs   map[string]*address     // with requests in progress or waiting
	windows *lru.Cache[string, int] // the windows of idle addresses, above Start

	waited, gaveUp prometheus.Counter
}

// address is what the limiter knows of one address with requests in
// progress or waiting.
type address struct {
	window, active int
	queue          []chan struct{} // waiting requests, first come first
}

// New returns a Limiter for p that remembers the windows of at most
// maxKeys idle addresses (DefaultMaxKeys when 0), or nil when p is off; its
// metrics go to reg.
func New(p Policy, maxKeys int, reg prometheus.Registerer) *Limiter {
	if !p.Enabled() {
		return nil
	}
	p.Max = max(p.Max, p.Start)
	if maxKeys <= 0 {
		maxKeys = DefaultMaxKeys
	}
	windows, err := lru.New[string, int](maxKeys)
	if err != nil {
		panic(err) // only for a size below 1, ruled out above
	}
	l := &Limiter{
		policy:  p,
		addrs:   make(map[string]*address),
		windows: windows,
		waited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gateway_inflight_waited_total",
			Help: "Requests that waited for a slot because their address had its window of requests in progress (GATEWAY_INFLIGHT_*).",
		}),
		gaveUp: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gateway_inflight_refused_total",
			Help: "Requests refused after waiting GATEWAY_INFLIGHT_WAIT for a slot, or whose client left while they waited.",
		}),
	}
	reg.MustRegister(l.waited, l.gaveUp)
	return l
}

// Policy returns the limiter's policy (the zero Policy when l is nil).
func (l *Limiter) Policy() Policy {
	if l == nil {
		return Policy{}
	}
	return l.policy
}

// Slot is one request's place among its address's requests in progress.
// Release gives it back; a nil *Slot (from a nil Limiter) holds nothing.
type Slot struct {
	l        *Limiter
	key      string
	released bool
}

// Acquire takes a slot of the address key (ratelimit.AddrKey), waiting in
// arrival order while the address has its window in progress. It fails
// with ErrWaitedTooLong when Wait passes, or ctx's error when ctx ends
// first; either way the request holds nothing.
func (l *Limiter) Acquire(ctx context.Context, key string) (*Slot, error) {
	if l == nil {
		return nil, nil
	}
	s := &Slot{l: l, key: key}
	l.mu.Lock()
	a := l.addrs[key]
	if a == nil {
		a = &address{window: l.policy.Start}
		if w, ok := l.windows.Get(key); ok {
			a.window = w
		}
		l.addrs[key] = a
	}
	if a.active < a.window && len(a.queue) == 0 {
		a.active++
		l.mu.Unlock()
		return s, nil
	}
	granted := make(chan struct{})
	a.queue = append(a.queue, granted)
	l.mu.Unlock()
	l.waited.Inc()

	timer := time.NewTimer(l.policy.Wait)
	defer timer.Stop()
	var err error
	select {
	case <-granted:
		return s, nil
	case <-timer.C:
		err = ErrWaitedTooLong
	case <-ctx.Done():
		err = ctx.Err()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case <-granted: // granted while it gave up: the slot is its own
		return s, nil
	default:
	}
	a.queue = without(a.queue, granted)
	l.forgetIdle(key, a)
	l.gaveUp.Inc()
	return nil, err
}

// Release gives the slot back, after a request answered with status: a
// status below 400 opens the address's window by one, a 4xx halves it
// (not below Start), any other leaves it; 0 (the request is still served,
// by a long-poll or stream that now only waits) leaves it too. The slot
// goes to the first request waiting, if any. Calls after the first do
// nothing.
func (s *Slot) Release(status int) {
	if s == nil || s.released {
		return
	}
	s.released = true
	l, p := s.l, s.l.policy
	l.mu.Lock()
	defer l.mu.Unlock()
	a := l.addrs[s.key]
	switch {
	case status > 0 && status < 400:
		a.window = min(a.window+1, p.Max)
	case status >= 400 && status < 500:
		a.window = max(a.window/2, p.Start)
	}
	a.active--
	for a.active < a.window && len(a.queue) > 0 {
		close(a.queue[0])
		a.queue = a.queue[1:]
		a.active++
	}
	l.forgetIdle(s.key, a)
}

// forgetIdle drops a, the address key, when nothing of it is in progress
// or waiting, keeping its window when above Start. l.mu is held.
func (l *Limiter) forgetIdle(key string, a *address) {
	if a.active > 0 || len(a.queue) > 0 {
		return
	}
	delete(l.addrs, key)
	if a.window > l.policy.Start {
		l.windows.Add(key, a.window)
	} else {
		l.windows.Remove(key)
	}
}

// without returns q without ch, keeping the order of the others.
func without(q []chan struct{}, ch chan struct{}) []chan struct{} {
	for i, c := range q {
		if c == ch {
			return append(q[:i], q[i+1:]...)
		}
	}
	return q
}

// Addresses is how many addresses have requests in progress or waiting.
// (Idle ones remember at most their window.)
func (l *Limiter) Addresses() int {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.addrs)
}

// Window reports the address key's window and how many of its requests
// are in progress and waiting.
func (l *Limiter) Window(key string) (window, active, waiting int) {
	if l == nil {
		return 0, 0, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if a := l.addrs[key]; a != nil {
		return a.window, a.active, len(a.queue)
	}
	if w, ok := l.windows.Peek(key); ok {
		return w, 0, 0
	}
	return l.policy.Start, 0, 0
}
