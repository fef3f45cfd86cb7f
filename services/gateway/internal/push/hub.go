// Package push is the gateway's in-memory hub of payment events: it is fed
// by payments.events (Consume), wakes long-polls waiting on a payment and
// feeds the server-sent-event streams of users, and keeps a bounded window
// of each user's most recent events so that a reconnecting stream resumes
// from memory. It never reads PostgreSQL; the HTTP layer fills gaps from
// payment_transitions (see httpapi/push.go).
package push

import (
	"container/list"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/finsvc/finance/pkg/ledger"
)

// Defaults of Config's bounds.
const (
	DefaultMaxSubscribers = 20_000
	DefaultBuffer         = 64
	DefaultRecentEvents   = 50_000
	// DefaultDrainWait bounds how long Drain waits for the open long-polls
	// and streams to end.
	DefaultDrainWait = 5 * time.Second
	// RecentPerUser is how many of a user's latest events (by user_seq)
	// the hub keeps: enough for a client that reconnects after a blip.
	RecentPerUser = 32
)

// Config bounds the hub's memory.
type Config struct {
	Logger *slog.Logger
	// Registry receives the hub's metrics.
	Registry prometheus.Registerer
	// MaxSubscribers caps open long-polls plus open streams.
	MaxSubscribers int
	// Buffer is how many events a stream may have waiting for its client
	// before the hub drops it as too slow.
	Buffer int
	// RecentEvents caps the events kept for resumption, over all users;
	// the users least recently active are forgotten first.
	RecentEvents int
	// DrainWait bounds how long Drain waits for open long-polls and
	// streams to write their last answer and close.
	DrainWait time.Duration
}

// Hub routes events to the waiters and streams that subscribed to them. All
// its methods are safe for concurrent use.
type Hub struct {
	logger *slog.Logger
	cfg    Config
	m      *metrics

	open     atomic.Int64 // waiters + streams, against MaxSubscribers
	draining chan struct{}
	drain    sync.Once
	idle     chan struct{} // closed once draining with nothing open
	idleOnce sync.Once

	mu      sync.Mutex
	users   map[int64]*user
	lru     *list.List // of *user holding recent events, most recent first
	kept    int        // recent events over all users
	waiters map[int64]map[*Waiter]struct{}
	// listeners see every published event (Listen).
	listeners []func(ledger.Event)
}

type user struct {
	id      int64
	recent  []ledger.Event // ascending user_seq, at most RecentPerUser
	streams map[*Stream]struct{}
	elem    *list.Element // in Hub.lru while recent is not empty
}

// New returns a hub; feed it with Consume or Publish.
func New(cfg Config) *Hub {
	if cfg.MaxSubscribers <= 0 {
		cfg.MaxSubscribers = DefaultMaxSubscribers
	}
	if cfg.Buffer <= 0 {
		cfg.Buffer = DefaultBuffer
	}
	if cfg.RecentEvents <= 0 {
		cfg.RecentEvents = DefaultRecentEvents
	}
	if cfg.DrainWait <= 0 {
		cfg.DrainWait = DefaultDrainWait
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	return &Hub{
		logger:   cfg.Logger,
		cfg:      cfg,
		m:        newMetrics(cfg.Registry),
		draining: make(chan struct{}),
		idle:     make(chan struct{}),
		users:    map[int64]*user{},
		lru:      list.New(),
		waiters:  map[int64]map[*Waiter]struct{}{},
	}
}

// Draining is closed when the gateway shuts down: long-polls answer the
// current state and streams end with a retry hint.
func (h *Hub) Draining() <-chan struct{} { return h.draining }

// Drain closes Draining, then waits until every open long-poll and stream
// has answered and closed, or DrainWait has passed. The HTTP layer answers
// them on connections taken out of net/http, which the server's own
// graceful shutdown does not wait for: this does. It is idempotent.
func (h *Hub) Drain() {
	h.drain.Do(func() { close(h.draining) })
	if h.open.Load() == 0 {
		h.idleOnce.Do(func() { close(h.idle) })
	}
	t := time.NewTimer(h.cfg.DrainWait)
	defer t.Stop()
	select {
	case <-h.idle:
	case <-t.C:
		h.logger.Warn("push: drain wait ended with connections open", "open", h.open.Load())
	}
}

// acquire takes one of MaxSubscribers slots.
func (h *Hub) acquire() bool {
	if h.open.Add(1) > int64(h.cfg.MaxSubscribers) {
		h.open.Add(-1)
		h.m.rejected.Inc()
		return false
	}
	return true
}

func (h *Hub) release() {
	if h.open.Add(-1) == 0 {
		select {
		case <-h.draining:
			h.idleOnce.Do(func() { close(h.idle) })
		default:
		}
	}
}

// Open returns how many long-polls and streams are open.
func (h *Hub) Open() int64 { return h.open.Load() }

// Listen makes fn see every event the hub publishes, from the one
// consumer of payments.events that feeds the hub (the read cache evicts
// with it). fn runs under the hub's lock: it must be quick and must not
// call the hub.
func (h *Hub) Listen(fn func(ledger.Event)) {
	h.mu.Lock()
	h.listeners = append(h.listeners, fn)
	h.mu.Unlock()
}

// Publish routes ev to the streams of its user and the waiters of its
// payment, and keeps it for resumption. Events may come more than once and
// out of user_seq order; subscribers sort that out by user_seq.
func (h *Hub) Publish(ev ledger.Event) {
	h.m.consumed.Inc()
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, fn := range h.listeners {
		fn(ev)
	}
	u := h.users[ev.UserID]
	if u == nil {
		u = &user{id: ev.UserID}
		h.users[ev.UserID] = u
	}
	h.keep(u, ev)
	shared := &ev // one copy for every stream: 8 bytes a buffered slot, not a whole event
	for s := range u.streams {
		select {
		case s.c <- shared:
		default:
			// Too slow: a stream that cannot take events as fast as they
			// come is ended rather than buffered without bound. Its client
			// resumes with Last-Event-ID and loses nothing.
			delete(u.streams, s)
			close(s.dropped)
			h.m.dropped.Inc()
		}
	}
	for w := range h.waiters[ev.PaymentID] {
		select {
		case w.c <- struct{}{}:
		default: // already woken
		}
	}
}

// keep inserts ev into u's recent events, in user_seq order, and enforces
// the per-user and global bounds. h.mu is held.
func (h *Hub) keep(u *user, ev ledger.Event) {
	i := sort.Search(len(u.recent), func(i int) bool { return u.recent[i].UserSeq >= ev.UserSeq })
	switch {
	case i < len(u.recent) && u.recent[i].UserSeq == ev.UserSeq:
		u.recent[i] = ev // a repeat of the same change
	case i == 0 && len(u.recent) == RecentPerUser:
		return // older than everything kept: nobody resumes from memory there
	default:
		u.recent = append(u.recent, ledger.Event{})
		copy(u.recent[i+1:], u.recent[i:])
		u.recent[i] = ev
		h.kept++
		if len(u.recent) > RecentPerUser {
			u.recent = append(u.recent[:0:0], u.recent[1:]...) // a fresh array: the old one may be large
			h.kept--
		}
	}
	if u.elem == nil {
		u.elem = h.lru.PushFront(u)
	} else {
		h.lru.MoveToFront(u.elem)
	}
	for h.kept > h.cfg.RecentEvents {
		old := h.lru.Back().Value.(*user)
		h.forget(old)
	}
	h.m.kept.Set(float64(h.kept))
}

// forget drops u's recent events. h.mu is held.
func (h *Hub) forget(u *user) {
	h.kept -= len(u.recent)
	u.recent = nil
	h.lru.Remove(u.elem)
	u.elem = nil
	if len(u.streams) == 0 {
		delete(h.users, u.id)
	}
}

// Stream is one subscription to a user's events.
type Stream struct {
	hub     *Hub
	userID  int64
	c       chan *ledger.Event
	dropped chan struct{}
	closed  bool
}

// Events delivers the user's events as the hub receives them: possibly
// repeated, possibly out of user_seq order. They are shared: read only.
func (s *Stream) Events() <-chan *ledger.Event { return s.c }

// Dropped is closed when the hub dropped the stream for being too slow.
func (s *Stream) Dropped() <-chan struct{} { return s.dropped }

// Subscribe opens a stream of userID's events. It returns, atomically with
// the subscription, the user's recent events the hub keeps, in user_seq
// order, so that nothing falls between them and the stream. ok is false
// when MaxSubscribers streams and waiters are open.
func (h *Hub) Subscribe(userID int64) (s *Stream, recent []ledger.Event, ok bool) {
	if !h.acquire() {
		return nil, nil, false
	}
	s = &Stream{hub: h, userID: userID, c: make(chan *ledger.Event, h.cfg.Buffer), dropped: make(chan struct{})}
	h.mu.Lock()
	u := h.users[userID]
	if u == nil {
		u = &user{id: userID}
		h.users[userID] = u
	}
	if u.streams == nil {
		u.streams = map[*Stream]struct{}{}
	}
	u.streams[s] = struct{}{}
	recent = append([]ledger.Event(nil), u.recent...)
	h.mu.Unlock()
	h.m.streams.Inc()
	return s, recent, true
}

// Close ends the subscription. It is idempotent.
func (s *Stream) Close() {
	h := s.hub
	h.mu.Lock()
	if s.closed {
		h.mu.Unlock()
		return
	}
	s.closed = true
	if u := h.users[s.userID]; u != nil {
		delete(u.streams, s)
		if len(u.streams) == 0 && len(u.recent) == 0 {
			delete(h.users, s.userID)
		}
	}
	h.mu.Unlock()
	h.m.streams.Dec()
	h.release()
}

// Waiter is a long-poll waiting on one payment.
type Waiter struct {
	hub       *Hub
	paymentID int64
	c         chan struct{}
	closed    bool
}

// Changed receives when an event about the payment arrives.
func (w *Waiter) Changed() <-chan struct{} { return w.c }

// Watch registers a waiter on paymentID. ok is false when MaxSubscribers
// streams and waiters are open.
func (h *Hub) Watch(paymentID int64) (w *Waiter, ok bool) {
	if !h.acquire() {
		return nil, false
	}
	w = &Waiter{hub: h, paymentID: paymentID, c: make(chan struct{}, 1)}
	h.mu.Lock()
	ws := h.waiters[paymentID]
	if ws == nil {
		ws = map[*Waiter]struct{}{}
		h.waiters[paymentID] = ws
	}
	ws[w] = struct{}{}
	h.mu.Unlock()
	h.m.waiters.Inc()
	return w, true
}

// Close removes the waiter. It is idempotent.
func (w *Waiter) Close() {
	h := w.hub
	h.mu.Lock()
	if w.closed {
		h.mu.Unlock()
		return
	}
	w.closed = true
	if ws := h.waiters[w.paymentID]; ws != nil {
		delete(ws, w)
		if len(ws) == 0 {
			delete(h.waiters, w.paymentID)
		}
	}
	h.mu.Unlock()
	h.m.waiters.Dec()
	h.release()
}

// Resumed counts a stream's catch-up, served from memory or from PostgreSQL.
func (h *Hub) Resumed(fromMemory bool) {
	if fromMemory {
		h.m.resumes.WithLabelValues("memory").Inc()
	} else {
		h.m.resumes.WithLabelValues("postgres").Inc()
	}
}

// GapFilled counts events a stream read from PostgreSQL because the topic
// delivered a later one first.
func (h *Hub) GapFilled(n int) { h.m.gapFilled.Add(float64(n)) }

type metrics struct {
	waiters, streams, kept prometheus.Gauge
	consumed, dropped      prometheus.Counter
	rejected, gapFilled    prometheus.Counter
	decodeErrors           prometheus.Counter
	resumes                *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		waiters: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gateway_push_waiters", Help: "Open long-polls (GET /v1/payments/{id}?wait=).",
		}),
		streams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gateway_push_streams", Help: "Open server-sent-event streams (GET /v1/users/{id}/events).",
		}),
		kept: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gateway_push_recent_events", Help: "Events kept in memory for streams that resume.",
		}),
		consumed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gateway_push_events_consumed_total", Help: "Events consumed from payments.events.",
		}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gateway_push_slow_subscribers_dropped_total",
			Help: "Streams ended because their client did not keep up (they resume with Last-Event-ID).",
		}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gateway_push_rejected_total",
			Help: "Long-polls and streams refused with 503 because GATEWAY_PUSH_MAX_SUBSCRIBERS were open.",
		}),
		gapFilled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gateway_push_gap_events_total",
			Help: "Events streams read from PostgreSQL because a later one arrived first.",
		}),
		decodeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gateway_push_decode_errors_total", Help: "payments.events records that did not decode (skipped).",
		}),
		resumes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_push_resumes_total",
			Help: "Streams resumed with Last-Event-ID, by where the missed events came from (memory, postgres).",
		}, []string{"source"}),
	}
	reg.MustRegister(m.waiters, m.streams, m.kept, m.consumed, m.dropped, m.rejected, m.gapFilled,
		m.decodeErrors, m.resumes)
	return m
}
