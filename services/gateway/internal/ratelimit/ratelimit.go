// Package ratelimit keeps one token bucket (golang.org/x/time/rate) per key
// (a user, a client address) in a least-recently-used cache of bounded size
// (hashicorp/golang-lru/v2), and describes each decision in the terms of
// the IETF RateLimit header fields (draft-ietf-httpapi-ratelimit-headers).
//
// Memory is bounded by MaxKeys: when a new key arrives at a full cache, the
// key seen least recently loses its bucket. A key that comes back after
// that starts with a full bucket, as it would after being idle for
// Policy.Window(); with MaxKeys well above the number of clients active
// within a window, only idle keys are evicted.
package ratelimit

import (
	"math"
	"net/netip"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"
)

// Policy is a token bucket: Rate tokens per second, at most Burst held. A
// request takes one token.
type Policy struct {
	Rate  float64
	Burst int
}

// Enabled reports whether the policy limits anything: a zero rate or burst
// turns it off.
func (p Policy) Enabled() bool { return p.Rate > 0 && p.Burst > 0 }

// Window is how long an empty bucket takes to fill again: the w of the
// policy's RateLimit-Policy item, in whole seconds (at least 1).
func (p Policy) Window() int {
	return max(1, int(math.Ceil(float64(p.Burst)/p.Rate)))
}

// Decision is the answer for one request.
type Decision struct {
	Allowed bool
	// Remaining is the whole tokens left after this request.
	Remaining int
	// Reset is how long until the bucket is full again.
	Reset time.Duration
	// RetryAfter is, for a refused request, how long until one token is
	// there: a retry after it is allowed, unless others took the token.
	RetryAfter time.Duration
}

// Limiter is the buckets of one Policy, one per key. It is safe for
// concurrent use.
type Limiter struct {
	policy Policy
	cache  *lru.Cache[string, *rate.Limiter]
}

// New returns a Limiter for p that keeps at most maxKeys buckets.
func New(p Policy, maxKeys int) *Limiter {
	c, err := lru.New[string, *rate.Limiter](max(1, maxKeys))
	if err != nil {
		panic(err) // only for a size below 1, which max rules out
	}
	return &Limiter{policy: p, cache: c}
}

// Policy returns the limiter's policy.
func (l *Limiter) Policy() Policy { return l.policy }

// Len returns how many keys have a bucket now (at most maxKeys).
func (l *Limiter) Len() int { return l.cache.Len() }

// Allow takes a token from key's bucket at now, if one is there.
func (l *Limiter) Allow(key string, now time.Time) Decision {
	b, ok := l.cache.Get(key)
	if !ok {
		fresh := rate.NewLimiter(rate.Limit(l.policy.Rate), l.policy.Burst)
		if prev, found, _ := l.cache.PeekOrAdd(key, fresh); found {
			b = prev // another request added it first
		} else {
			b = fresh
		}
	}
	r := b.ReserveN(now, 1)
	var d Decision
	if !r.OK() {
		return Decision{RetryAfter: time.Duration(l.policy.Window()) * time.Second}
	}
	if delay := r.DelayFrom(now); delay > 0 {
		r.CancelAt(now)
		d.RetryAfter = delay
	} else {
		d.Allowed = true
	}
	tokens := max(0, b.TokensAt(now))
	d.Remaining = int(tokens)
	d.Reset = time.Duration((float64(l.policy.Burst) - tokens) / l.policy.Rate * float64(time.Second))
	return d
}

// AddrKey is the key of a peer address: the address itself for IPv4, its
// /64 for IPv6 (one subscriber's usual allocation, which a client could
// otherwise walk through). A string that is no address is its own key.
func AddrKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	a = a.Unmap()
	if a.Is6() {
		if p, err := a.Prefix(64); err == nil {
			return p.String()
		}
	}
	return a.String()
}
