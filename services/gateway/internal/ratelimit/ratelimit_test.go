package ratelimit

import (
	"strconv"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC)

func TestBucketRefusesThenRefills(t *testing.T) {
	t.Parallel()
	l := New(Policy{Rate: 0.25, Burst: 2}, 10) // one token per 4 s
	for i, want := range []Decision{
		{Allowed: true, Remaining: 1, Reset: 4 * time.Second},
		{Allowed: true, Remaining: 0, Reset: 8 * time.Second},
		{Allowed: false, Remaining: 0, Reset: 8 * time.Second, RetryAfter: 4 * time.Second},
	} {
		if got := l.Allow("a", t0); got != want {
			t.Fatalf("request %d: %+v, want %+v", i+1, got, want)
		}
	}
	// Retry-After is honest: just before it the bucket is still empty, at it
	// the request passes.
	if got := l.Allow("a", t0.Add(4*time.Second-time.Millisecond)); got.Allowed {
		t.Fatalf("allowed before RetryAfter: %+v", got)
	}
	if got := l.Allow("a", t0.Add(4*time.Second)); !got.Allowed {
		t.Fatalf("refused at RetryAfter: %+v", got)
	}
	if w := l.Policy().Window(); w != 8 {
		t.Errorf("Window = %d, want 8", w)
	}
}

func TestKeysAreIsolated(t *testing.T) {
	t.Parallel()
	l := New(Policy{Rate: 1, Burst: 1}, 10)
	if !l.Allow("a", t0).Allowed || l.Allow("a", t0).Allowed {
		t.Fatal("a's bucket of one token")
	}
	if !l.Allow("b", t0).Allowed {
		t.Fatal("b is refused because a used its bucket")
	}
}

// TestMemoryBound: however many keys come, at most maxKeys buckets are
// kept, from many goroutines at once; the keys evicted are the least
// recently seen.
func TestMemoryBound(t *testing.T) {
	t.Parallel()
	const maxKeys = 100
	l := New(Policy{Rate: 1, Burst: 1}, maxKeys)
	l.Allow("hot", t0)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 1000 {
				l.Allow(strconv.Itoa(g)+"-"+strconv.Itoa(i), t0)
				if n := l.Len(); n > maxKeys {
					t.Errorf("%d buckets kept, cap %d", n, maxKeys)
					return
				}
			}
		})
	}
	wg.Wait()
	if n := l.Len(); n != maxKeys {
		t.Errorf("%d buckets kept after 8,000 keys, want the cap %d", n, maxKeys)
	}
	// "hot" was evicted long ago: it starts again with a full bucket.
	if !l.Allow("hot", t0).Allowed {
		t.Error("an evicted key is refused")
	}
}

func TestDisabledPolicy(t *testing.T) {
	t.Parallel()
	for _, p := range []Policy{{}, {Rate: 1}, {Burst: 1}} {
		if p.Enabled() {
			t.Errorf("%+v is enabled", p)
		}
	}
	if !(Policy{Rate: 1, Burst: 1}).Enabled() {
		t.Error("a real policy is disabled")
	}
}
