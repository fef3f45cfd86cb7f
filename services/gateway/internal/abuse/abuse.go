// Package abuse shuts out a client address that keeps getting refused.
//
// Every refusal (a 4xx answer) costs the gateway most of what a served
// request costs: the connection's reads and writes, the header parse, the
// token check, the problem document. A client that sends thousands of bad
// requests a second therefore takes CPU from everyone else, even though
// each of its requests is refused (docs/security.md, "Hostile client").
// So each address has a budget of refusals (a token bucket); an address
// that overdraws it is blocked for a while. Its requests then no longer
// reach the API (Handler) and its new connections are not served
// (Listener): both are held unanswered, read and dropped, until the client
// gives up or HoldFor passes (a tarpit). Closing them instead makes a
// client open the next one at once, and each TCP handshake costs both
// sides more than the refusal did. Held connections are bounded per
// address and in all; beyond that a new connection is reset as soon as it
// is accepted and a request gets a short 429 with its connection closed.
//
// An address that is refused again within Probation after a block ends is
// blocked again at once, for twice as long each time (up to MaxBlock): a
// client that ignores the block pays for it, and costs almost nothing while
// it lasts.
//
// The address is the peer's, as the per-address rate limit's
// (ratelimit.AddrKey): behind a proxy that is the proxy's, so there the
// guard must be off (GATEWAY_BLOCK=false) or the proxy would be shut out.
package abuse

import (
	"fmt"
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/finsvc/finance/pkg/problem"
	"github.com/finsvc/finance/services/gateway/internal/ratelimit"
)

// Policy is when an address is blocked and for how long.
type Policy struct {
	// Refusals is each address's budget of refused requests; a zero rate
	// or burst turns the guard off.
	Refusals ratelimit.Policy
	// Block is how long the first block lasts; each block within
	// Probation of the previous one's end lasts twice as long, up to
	// MaxBlock.
	Block, MaxBlock time.Duration
	// Probation is how long after a block ends one more refusal blocks
	// the address again, whatever its budget.
	Probation time.Duration
	// HoldPerAddress and HoldMax bound the connections held unanswered
	// (per blocked address, and in all); HoldFor is how long each is held
	// unless the client gives up first.
	HoldPerAddress, HoldMax int
	HoldFor                 time.Duration
}

// DefaultPolicy: 50 refusals a second with bursts of 500 per address is far
// above what a working client gets (an expired token, a missing payment, a
// 429 it then waits out), and a flood of bad requests overdraws it within a
// fraction of a second. Blocks of 10 s double up to 5 minutes. Up to 256
// connections per address (a browser opens 6) and 4,096 in all are held,
// each for a minute at most.
var DefaultPolicy = Policy{
	Refusals:       ratelimit.Policy{Rate: 50, Burst: 500},
	Block:          10 * time.Second,
	MaxBlock:       5 * time.Minute,
	Probation:      time.Minute,
	HoldPerAddress: 256,
	HoldMax:        4096,
	HoldFor:        time.Minute,
}

// Enabled reports whether the policy blocks anything.
func (p Policy) Enabled() bool { return p.Refusals.Enabled() && p.Block > 0 }

// block is what the guard remembers of a blocked address.
type block struct {
	until   time.Time
	length  time.Duration
	blocked bool // false: the zero value, never blocked
}

// Guard applies a Policy. A nil *Guard blocks nothing; its methods are safe
// to call.
type Guard struct {
	policy  Policy
	now     func() time.Time
	budget  *ratelimit.Limiter
	mu      sync.Mutex // orders a block's check and update per address
	blocks  *lru.Cache[string, block]
	started prometheus.Counter
	closed  prometheus.Counter
	refused prometheus.Counter

	heldMu sync.Mutex
	held   map[net.Conn]string // held connection: its address key
	heldBy map[string]int      // address key: its held connections
	holds  prometheus.Gauge
}

// New returns a Guard for p that remembers at most maxKeys addresses (the
// least recently seen forgotten first), or nil when p is off. now is the
// clock (time.Now when nil); the guard's metrics go to reg.
func New(p Policy, maxKeys int, now func() time.Time, reg prometheus.Registerer) *Guard {
	if !p.Enabled() {
		return nil
	}
	if now == nil {
		now = time.Now
	}
	p.MaxBlock = max(p.MaxBlock, p.Block)
	blocks, err := lru.New[string, block](max(1, maxKeys))
	if err != nil {
		panic(err) // only for a size below 1, which max rules out
	}
	g := &Guard{
		policy: p, now: now,
		budget: ratelimit.New(p.Refusals, maxKeys),
		blocks: blocks,
		held:   make(map[net.Conn]string),
		heldBy: make(map[string]int),
		holds: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gateway_blocked_connections_held",
			Help: "Connections of blocked addresses held unread now.",
		}),
		started: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gateway_blocked_addresses_total",
			Help: "Blocks of a client address that overdrew its budget of refused requests (GATEWAY_BLOCK_*).",
		}),
		closed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gateway_blocked_connections_total",
			Help: "Connections from a blocked address reset as soon as they were accepted, beyond the ones held.",
		}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gateway_blocked_requests_total",
			Help: "Requests from a blocked address answered 429 and their connection closed, where it could not be held.",
		}),
	}
	reg.MustRegister(g.started, g.closed, g.refused, g.holds)
	return g
}

// Policy returns the guard's policy.
func (g *Guard) Policy() Policy { return g.policy }

// Refused counts one refused request of the address key
// (ratelimit.AddrKey) and blocks the address when that overdraws its
// budget, or when it comes within Probation of a block's end.
func (g *Guard) Refused(key string) {
	if g == nil {
		return
	}
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	b, _ := g.blocks.Get(key)
	if b.blocked && now.Before(b.until) {
		return // refused by a request that was under way when the block began
	}
	length := g.policy.Block
	if b.blocked && now.Sub(b.until) < g.policy.Probation {
		length = min(2*b.length, g.policy.MaxBlock)
	} else if g.budget.Allow(key, now).Allowed {
		return
	}
	g.blocks.Add(key, block{until: now.Add(length), length: length, blocked: true})
	g.started.Inc()
}

// BlockedFor reports how long the address key stays blocked: 0 when it is
// not blocked.
func (g *Guard) BlockedFor(key string) time.Duration {
	if g == nil {
		return 0
	}
	b, ok := g.blocks.Get(key)
	if !ok || !b.blocked {
		return 0
	}
	return max(0, b.until.Sub(g.now()))
}

// TypeBlocked is the problem type of a request from a blocked address.
const TypeBlocked = "blocked"

// Handler returns next behind the guard: a request from a blocked address
// never reaches next (it is not traced, measured, logged or
// authenticated). Its connection is taken from the server and held
// unanswered until the block ends, as the listener holds new ones; when no
// more can be held, or the connection cannot be taken (HTTP/2, a test's
// recorder), the request gets 429 "blocked" and the connection is closed.
// next itself when g is nil.
func (g *Guard) Handler(next http.Handler) http.Handler {
	if g == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := peerKey(r.RemoteAddr)
		wait := g.BlockedFor(key)
		if wait <= 0 {
			next.ServeHTTP(w, r)
			return
		}
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			if !g.Hold(conn, key) {
				reset(conn)
				g.closed.Inc()
			}
			return
		}
		g.refused.Inc()
		retry := int(math.Ceil(wait.Seconds()))
		budget := g.policy.Refusals
		h := w.Header()
		h.Set("RateLimit-Policy", fmt.Sprintf("%q;q=%d;w=%d", TypeBlocked, budget.Burst, budget.Window()))
		h.Set("RateLimit", fmt.Sprintf("%q;r=0;t=%d", TypeBlocked, retry))
		h.Set("Retry-After", strconv.Itoa(retry))
		h.Set("Connection", "close")
		p := problem.New(http.StatusTooManyRequests, TypeBlocked, "Client address blocked",
			fmt.Sprintf("too many refused requests from this address; it is blocked for %d s", retry))
		p.Instance = r.URL.Path
		problem.Write(w, p)
	})
}

// Listener returns ln with the connections of blocked addresses held or
// reset as soon as they are accepted (see the package comment); ln itself
// when g is nil. Closing it also closes the held connections.
func (g *Guard) Listener(ln net.Listener) net.Listener {
	if g == nil {
		return ln
	}
	return &listener{Listener: ln, g: g}
}

type listener struct {
	net.Listener
	g *Guard
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key := peerKey(c.RemoteAddr().String())
		wait := l.g.BlockedFor(key)
		if wait == 0 {
			return c, nil
		}
		if !l.g.Hold(c, key) {
			reset(c)
			l.g.closed.Inc()
		}
	}
}

func (l *listener) Close() error {
	err := l.Listener.Close()
	l.g.heldMu.Lock()
	defer l.g.heldMu.Unlock()
	for c := range l.g.held {
		_ = c.Close()
	}
	return err
}

// Hold keeps c, a connection of the blocked address key, open for HoldFor,
// reading and dropping what it sends, unless that would hold more than the
// policy allows; it reports whether c is held (false: the caller closes
// it). A held connection the client closes is let go at once, so that the
// bound counts the connections a client still waits on. The hold outlasts
// a shorter block: let go when the block ends, a client's connections would
// all come back at once, each with a request, before one more refusal
// blocks the address again; held, they come back one by one as the client
// gives up on them.
func (g *Guard) Hold(c net.Conn, key string) bool {
	if g == nil || g.BlockedFor(key) <= 0 {
		return false
	}
	d := g.policy.HoldFor
	g.heldMu.Lock()
	defer g.heldMu.Unlock()
	if len(g.held) >= g.policy.HoldMax || g.heldBy[key] >= g.policy.HoldPerAddress {
		return false
	}
	g.held[c] = key
	g.heldBy[key]++
	g.holds.Inc()
	go g.drain(c, d)
	return true
}

// drain reads and drops what a held connection sends until the client
// closes it, d passes or the listener closes, then resets it and forgets
// it.
func (g *Guard) drain(c net.Conn, d time.Duration) {
	_ = c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 512)
	for {
		if _, err := c.Read(buf); err != nil {
			break
		}
	}
	g.heldMu.Lock()
	defer g.heldMu.Unlock()
	reset(c)
	key := g.held[c]
	delete(g.held, c)
	if g.heldBy[key]--; g.heldBy[key] <= 0 {
		delete(g.heldBy, key)
	}
	g.holds.Dec()
}

// reset closes c with a reset, so that the gateway keeps no TIME_WAIT state
// for a shut-out client.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

// peerKey is the address key (ratelimit.AddrKey) of a peer's "host:port".
func peerKey(remote string) string {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	return ratelimit.AddrKey(host)
}
