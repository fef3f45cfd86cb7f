// Package cache keeps encoded read answers of the gateway (a user's first
// feed pages and balance), each tagged with the wallet's event_seq it was
// built at. A reader asks with the event_seq it just read from the primary
// and gets a document only when the tags are equal, so a cached answer is
// never older than the primary: correctness never depends on eviction.
// Events from payments.events evict a user's documents early (Evict), which
// only frees memory sooner.
//
// Memory is bounded in bytes and in documents; the users least recently
// read or written are dropped first (hashicorp/golang-lru's simplelru under
// one mutex, so both bounds hold exactly, not eventually).
package cache

import (
	"sync"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"github.com/prometheus/client_golang/prometheus"
)

// Defaults of Config's bounds.
const (
	DefaultMaxBytes   = 64 << 20
	DefaultMaxEntries = 100_000
)

// Per-item overheads charged against MaxBytes besides the documents'
// bytes: a user's bundle (LRU element, map slot, struct) and a document's
// slice header and limit. Measured by BenchmarkCacheAtBound's heap.
const (
	userOverhead = 160
	docOverhead  = 48
)

// Config bounds the cache. MaxBytes or MaxEntries of 0 or less turn it
// off: every lookup misses and nothing is kept.
type Config struct {
	MaxBytes   int64
	MaxEntries int
	// Registry receives the cache's metrics; nil registers none.
	Registry prometheus.Registerer
}

// Cache is safe for concurrent use. A nil *Cache is an off cache.
type Cache struct {
	cfg Config
	m   *metrics

	mu      sync.Mutex
	users   *simplelru.LRU[int64, *bundle]
	bytes   int64
	entries int
}

// bundle is one user's documents, all built at the same event_seq.
type bundle struct {
	seq     int64
	balance []byte
	feeds   []feedDoc
}

type feedDoc struct {
	limit int
	body  []byte
}

func (b *bundle) cost() int64 {
	n := int64(userOverhead)
	if b.balance != nil {
		n += int64(len(b.balance)) + docOverhead
	}
	for _, f := range b.feeds {
		n += int64(len(f.body)) + docOverhead
	}
	return n
}

func (b *bundle) docs() int {
	n := len(b.feeds)
	if b.balance != nil {
		n++
	}
	return n
}

// New returns a cache with cfg's bounds.
func New(cfg Config) *Cache {
	c := &Cache{cfg: cfg, m: newMetrics(cfg.Registry)}
	// The LRU's own size cap is never reached: Put enforces both bounds
	// itself, and a user holds at least one document.
	users, err := simplelru.NewLRU[int64, *bundle](max(cfg.MaxEntries, 1), nil)
	if err != nil {
		panic(err) // only for a size below 1, which max rules out
	}
	c.users = users
	return c
}

func (c *Cache) off() bool {
	return c == nil || c.cfg.MaxBytes <= 0 || c.cfg.MaxEntries <= 0
}

// Feed returns the first feed page of userID with limit entries, encoded,
// when one built at event_seq seq is kept.
func (c *Cache) Feed(userID int64, limit int, seq int64) ([]byte, bool) {
	if c.off() {
		return nil, false
	}
	c.mu.Lock()
	b, ok := c.users.Get(userID)
	var body []byte
	if ok && b.seq == seq {
		for _, f := range b.feeds {
			if f.limit == limit {
				body = f.body
				break
			}
		}
	}
	c.mu.Unlock()
	c.m.lookup("feed", body != nil)
	return body, body != nil
}

// HasFeed reports whether a first page of userID's feed with limit is kept,
// whatever its event_seq, without counting a lookup or refreshing the
// user's place in the LRU: the reader then knows a read of the wallet's
// event_seq could let it serve that page.
func (c *Cache) HasFeed(userID int64, limit int) bool {
	if c.off() {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	b, ok := c.users.Peek(userID)
	if !ok {
		return false
	}
	for _, f := range b.feeds {
		if f.limit == limit {
			return true
		}
	}
	return false
}

// Balance returns userID's balance document when one built at seq is kept.
func (c *Cache) Balance(userID, seq int64) ([]byte, bool) {
	if c.off() {
		return nil, false
	}
	c.mu.Lock()
	b, ok := c.users.Get(userID)
	var body []byte
	if ok && b.seq == seq {
		body = b.balance
	}
	c.mu.Unlock()
	c.m.lookup("balance", body != nil)
	return body, body != nil
}

// PutFeed keeps body, userID's first feed page with limit entries built at
// seq. body must not be changed afterwards.
func (c *Cache) PutFeed(userID int64, limit int, seq int64, body []byte) {
	c.put(userID, seq, func(b *bundle) {
		for i, f := range b.feeds {
			if f.limit == limit {
				b.feeds[i].body = body
				return
			}
		}
		b.feeds = append(b.feeds, feedDoc{limit: limit, body: body})
	})
}

// PutBalance keeps body, userID's balance document built at seq.
func (c *Cache) PutBalance(userID, seq int64, body []byte) {
	c.put(userID, seq, func(b *bundle) { b.balance = body })
}

// put adds a document to userID's bundle. Documents of an older event_seq
// are dropped (no reader can be served them again); a document older than
// the bundle is not kept.
func (c *Cache) put(userID, seq int64, add func(*bundle)) {
	if c.off() {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	old, ok := c.users.Peek(userID)
	if ok && old.seq > seq {
		return
	}
	b := &bundle{seq: seq}
	if ok && old.seq == seq {
		// Copy, so that readers holding the old bundle's slices see no change.
		b.balance = old.balance
		b.feeds = append([]feedDoc(nil), old.feeds...)
	}
	add(b)
	if ok {
		c.bytes -= old.cost()
		c.entries -= old.docs()
	}
	cost := b.cost()
	if cost > c.cfg.MaxBytes {
		// Larger than the whole cache: keep none of it.
		if ok {
			c.users.Remove(userID)
			c.m.evicted.WithLabelValues("bound").Inc()
		}
		c.gauges()
		return
	}
	c.users.Add(userID, b)
	c.bytes += cost
	c.entries += b.docs()
	for c.bytes > c.cfg.MaxBytes || c.entries > c.cfg.MaxEntries {
		_, victim, ok := c.users.RemoveOldest()
		if !ok {
			break
		}
		c.bytes -= victim.cost()
		c.entries -= victim.docs()
		c.m.evicted.WithLabelValues("bound").Inc()
	}
	c.gauges()
}

// Evict drops userID's documents: an event about the user arrived, so they
// will not be served again.
func (c *Cache) Evict(userID int64) {
	if c.off() {
		return
	}
	c.mu.Lock()
	if b, ok := c.users.Peek(userID); ok {
		c.users.Remove(userID)
		c.bytes -= b.cost()
		c.entries -= b.docs()
		c.m.evicted.WithLabelValues("event").Inc()
		c.gauges()
	}
	c.mu.Unlock()
}

// Stats is the cache's size.
type Stats struct {
	Users, Entries int
	Bytes          int64
}

// Stats returns the cache's current size.
func (c *Cache) Stats() Stats {
	if c.off() {
		return Stats{}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return Stats{Users: c.users.Len(), Entries: c.entries, Bytes: c.bytes}
}

// gauges updates the size gauges. c.mu is held.
func (c *Cache) gauges() {
	c.m.bytes.Set(float64(c.bytes))
	c.m.entries.Set(float64(c.entries))
}

type metrics struct {
	hits, misses   *prometheus.CounterVec
	evicted        *prometheus.CounterVec
	bytes, entries prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		hits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_read_cache_hits_total", Help: "Reads answered from the gateway's cache, by document (feed, balance).",
		}, []string{"doc"}),
		misses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_read_cache_misses_total",
			Help: "Cache lookups with no document at the primary's event_seq, by document (feed, balance).",
		}, []string{"doc"}),
		evicted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_read_cache_evictions_total",
			Help: "Users' documents dropped, by reason: event (payments.events named the user), bound (memory bounds).",
		}, []string{"reason"}),
		bytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gateway_read_cache_bytes", Help: "Bytes the cache charges against GATEWAY_CACHE_MAX_BYTES.",
		}),
		entries: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gateway_read_cache_entries", Help: "Documents in the cache.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.hits, m.misses, m.evicted, m.bytes, m.entries)
	}
	return m
}

func (m *metrics) lookup(doc string, hit bool) {
	if hit {
		m.hits.WithLabelValues(doc).Inc()
	} else {
		m.misses.WithLabelValues(doc).Inc()
	}
}
