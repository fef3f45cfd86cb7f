package cache_test

import (
	"bytes"
	"fmt"
	"runtime"
	"sync"
	"testing"

	"github.com/finsvc/finance/services/gateway/internal/cache"
)

func TestServedOnlyAtTheSameEventSeq(t *testing.T) {
	c := cache.New(cache.Config{MaxBytes: 1 << 20, MaxEntries: 100})
	c.PutFeed(7, 50, 3, []byte("page@3"))
	c.PutBalance(7, 3, []byte("bal@3"))

	if got, ok := c.Feed(7, 50, 3); !ok || string(got) != "page@3" {
		t.Fatalf("Feed(7,50,3) = %q %v, want page@3", got, ok)
	}
	if got, ok := c.Balance(7, 3); !ok || string(got) != "bal@3" {
		t.Fatalf("Balance(7,3) = %q %v, want bal@3", got, ok)
	}
	// The primary moved on: the documents built at 3 are never served.
	if got, ok := c.Feed(7, 50, 4); ok {
		t.Errorf("Feed at seq 4 served %q built at 3", got)
	}
	if got, ok := c.Balance(7, 4); ok {
		t.Errorf("Balance at seq 4 served %q built at 3", got)
	}
	// Another limit is another page; another user another bundle.
	if _, ok := c.Feed(7, 10, 3); ok {
		t.Error("limit 10 served the page of limit 50")
	}
	if _, ok := c.Feed(8, 50, 3); ok {
		t.Error("user 8 served user 7's page")
	}

	// A newer document replaces the bundle; an older one is not kept.
	c.PutFeed(7, 50, 5, []byte("page@5"))
	if _, ok := c.Balance(7, 3); ok {
		t.Error("balance of seq 3 still served after a page of seq 5 arrived")
	}
	c.PutBalance(7, 4, []byte("bal@4"))
	if _, ok := c.Balance(7, 4); ok {
		t.Error("a balance older than the bundle was kept")
	}
	if got, ok := c.Feed(7, 50, 5); !ok || string(got) != "page@5" {
		t.Errorf("Feed(7,50,5) = %q %v after an older put, want page@5", got, ok)
	}
	if s := c.Stats(); s.Users != 1 || s.Entries != 1 {
		t.Errorf("stats %+v, want 1 user with 1 document", s)
	}
}

func TestEvict(t *testing.T) {
	c := cache.New(cache.Config{MaxBytes: 1 << 20, MaxEntries: 100})
	c.PutFeed(7, 50, 3, []byte("page"))
	c.PutBalance(7, 3, []byte("bal"))
	c.PutBalance(8, 1, []byte("other"))
	c.Evict(7)
	c.Evict(99) // unknown: nothing happens
	if _, ok := c.Feed(7, 50, 3); ok {
		t.Error("page served after Evict")
	}
	if _, ok := c.Balance(7, 3); ok {
		t.Error("balance served after Evict")
	}
	if _, ok := c.Balance(8, 1); !ok {
		t.Error("Evict(7) dropped user 8")
	}
	if s := c.Stats(); s.Users != 1 || s.Entries != 1 {
		t.Errorf("stats %+v, want user 8 alone", s)
	}
}

func TestBounds(t *testing.T) {
	t.Run("entries", func(t *testing.T) {
		c := cache.New(cache.Config{MaxBytes: 1 << 30, MaxEntries: 10})
		for u := int64(1); u <= 30; u++ {
			c.PutBalance(u, 1, []byte("b"))
			if s := c.Stats(); s.Entries > 10 {
				t.Fatalf("after user %d: %d entries, bound 10", u, s.Entries)
			}
		}
		// The least recently used go first: 21..30 stay.
		if _, ok := c.Balance(20, 1); ok {
			t.Error("user 20 kept; the bound should have dropped it")
		}
		if _, ok := c.Balance(30, 1); !ok {
			t.Error("user 30, the latest, was dropped")
		}
	})
	t.Run("bytes", func(t *testing.T) {
		const bound = 64 << 10
		c := cache.New(cache.Config{MaxBytes: bound, MaxEntries: 1 << 20})
		page := bytes.Repeat([]byte("x"), 1000)
		for u := int64(1); u <= 1000; u++ {
			c.PutFeed(u, 50, 1, page)
			c.PutFeed(u, 10, 1, page[:200])
			if s := c.Stats(); s.Bytes > bound {
				t.Fatalf("after user %d: %d bytes, bound %d", u, s.Bytes, bound)
			}
		}
		s := c.Stats()
		if s.Bytes < bound/2 || s.Users < 10 {
			t.Errorf("stats %+v: the bound of %d bytes should be nearly used", s, bound)
		}
		// Reading a user keeps it: the bound drops others.
		c.PutFeed(2000, 50, 1, page)
		if _, ok := c.Feed(2000, 50, 1); !ok {
			t.Fatal("latest user missing")
		}
		for u := int64(3000); u < 3030; u++ {
			c.Feed(2000, 50, 1)
			c.PutFeed(u, 50, 1, page)
		}
		if _, ok := c.Feed(2000, 50, 1); !ok {
			t.Error("a user read before every put was dropped")
		}
	})
	t.Run("larger than the cache", func(t *testing.T) {
		c := cache.New(cache.Config{MaxBytes: 500, MaxEntries: 10})
		c.PutFeed(1, 50, 1, make([]byte, 1000))
		if _, ok := c.Feed(1, 50, 1); ok {
			t.Error("a document larger than the cache was kept")
		}
		if s := c.Stats(); s != (cache.Stats{}) {
			t.Errorf("stats %+v, want empty", s)
		}
	})
	t.Run("off", func(t *testing.T) {
		for _, c := range []*cache.Cache{nil, cache.New(cache.Config{}), cache.New(cache.Config{MaxBytes: 1 << 20})} {
			c.PutBalance(1, 1, []byte("b"))
			if _, ok := c.Balance(1, 1); ok {
				t.Error("an off cache served a document")
			}
			c.Evict(1)
		}
	})
}

// TestConcurrent runs puts, reads and evictions from 8 goroutines (for
// go test -race) and checks the bounds after.
func TestConcurrent(t *testing.T) {
	c := cache.New(cache.Config{MaxBytes: 32 << 10, MaxEntries: 200})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				u := int64((g*7919 + i) % 500)
				seq := int64(i % 5)
				body := fmt.Appendf(nil, "user %d seq %d", u, seq)
				c.PutFeed(u, 50, seq, body)
				if got, ok := c.Feed(u, 50, seq); ok && !bytes.HasSuffix(got, fmt.Appendf(nil, "seq %d", seq)) {
					t.Errorf("Feed(%d, seq %d) = %q", u, seq, got)
				}
				if i%10 == 0 {
					c.Evict(u)
				}
			}
		})
	}
	wg.Wait()
	if s := c.Stats(); s.Bytes > 32<<10 || s.Entries > 200 {
		t.Errorf("stats %+v beyond the bounds", s)
	}
}

// BenchmarkCacheAtBound fills a cache of 64 MiB with first pages of 50
// entries (about 3.9 KB each, as the feed encodes them) and a balance per
// user, and reports the heap it takes against the bytes it charges.
func BenchmarkCacheAtBound(b *testing.B) {
	page := bytes.Repeat([]byte("x"), 3900)
	bal := bytes.Repeat([]byte("y"), 80)
	for b.Loop() {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		c := cache.New(cache.Config{MaxBytes: cache.DefaultMaxBytes, MaxEntries: cache.DefaultMaxEntries})
		for u := int64(1); u <= 40_000; u++ {
			c.PutFeed(u, 50, 1, append([]byte(nil), page...))
			c.PutBalance(u, 1, append([]byte(nil), bal...))
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		s := c.Stats()
		b.ReportMetric(float64(s.Bytes)/(1<<20), "charged-MiB")
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "heap-MiB")
		b.ReportMetric(float64(s.Users), "users")
		b.ReportMetric(float64(s.Entries), "entries")
		runtime.KeepAlive(c)
	}
}
