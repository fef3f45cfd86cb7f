package abuse_test

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/finsvc/finance/pkg/problem"
	"github.com/finsvc/finance/pkg/testkit"
	"github.com/finsvc/finance/services/gateway/internal/abuse"
	"github.com/finsvc/finance/services/gateway/internal/ratelimit"
)

// policy: 3 refusals, then one a second; blocks of 10 s doubling to 40 s;
// a minute's probation.
var policy = abuse.Policy{
	Refusals:  ratelimit.Policy{Rate: 1, Burst: 3},
	Block:     10 * time.Second,
	MaxBlock:  40 * time.Second,
	Probation: time.Minute,
}

func newGuard(t *testing.T) (*abuse.Guard, *testkit.Clock, *prometheus.Registry) {
	t.Helper()
	c := testkit.NewClock(time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC))
	reg := prometheus.NewRegistry()
	return abuse.New(policy, 100, c.Now, reg), c, reg
}

// TestBlockAfterBudgetThenDoubling: an address is blocked when it overdraws
// its budget of refusals, not before; another address is not; a refusal
// within the probation after a block blocks it again for twice as long, up
// to the longest block; a clean probation gives the budget back.
func TestBlockAfterBudgetThenDoubling(t *testing.T) {
	t.Parallel()
	g, c, reg := newGuard(t)
	const a, b = "203.0.113.7", "203.0.113.8"
	for i := range 3 {
		g.Refused(a)
		if d := g.BlockedFor(a); d != 0 {
			t.Fatalf("after %d refusals (the budget is 3): blocked for %v", i+1, d)
		}
	}
	g.Refused(a)
	if d := g.BlockedFor(a); d != 10*time.Second {
		t.Fatalf("over the budget: blocked for %v, want 10s", d)
	}
	if d := g.BlockedFor(b); d != 0 {
		t.Fatalf("another address: blocked for %v", d)
	}
	g.Refused(a) // a request under way when the block began: no longer block
	if d := g.BlockedFor(a); d != 10*time.Second {
		t.Fatalf("refused while blocked: blocked for %v, want still 10s", d)
	}
	c.Add(10 * time.Second)
	if d := g.BlockedFor(a); d != 0 {
		t.Fatalf("after the block: blocked for %v", d)
	}
	for _, want := range []time.Duration{20 * time.Second, 40 * time.Second, 40 * time.Second} {
		c.Add(time.Second) // within the probation; the budget has tokens again
		g.Refused(a)
		if d := g.BlockedFor(a); d != want {
			t.Fatalf("refused on probation: blocked for %v, want %v", d, want)
		}
		c.Add(want)
	}
	c.Add(policy.Probation)
	g.Refused(a)
	if d := g.BlockedFor(a); d != 0 {
		t.Fatalf("refused after a clean probation, within the budget: blocked for %v", d)
	}
	wantValue(t, reg, "gateway_blocked_addresses_total", 4)
}

// TestListenerHoldsThenResetsBlockedConnections: the guard's listener
// holds a blocked address's new connections unread, up to the policy's
// bound per address, and resets the ones beyond it before reading a byte;
// it hands over another address's connections, and the blocked address's
// once the block ends; closing the listener closes the held ones.
func TestListenerHoldsThenResetsBlockedConnections(t *testing.T) {
	t.Parallel()
	c := testkit.NewClock(time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC))
	reg := prometheus.NewRegistry()
	p := policy
	p.HoldPerAddress, p.HoldMax, p.HoldFor = 1, 10, time.Minute
	g := abuse.New(p, 100, c.Now, reg)
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := g.Listener(inner)
	t.Cleanup(func() { ln.Close() })
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- conn
		}
	}()
	// tryDial connects from the address and sends a request line; a reset
	// can come before connect returns.
	tryDial := func(from string) (net.Conn, error) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
		conn, err := d.Dial("tcp", inner.Addr().String())
		if err != nil {
			return nil, err
		}
		t.Cleanup(func() { conn.Close() })
		_, _ = conn.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
		return conn, nil
	}
	dial := func(from string) net.Conn {
		t.Helper()
		conn, err := tryDial(from)
		if err != nil {
			t.Fatalf("dial from %s: %v", from, err)
		}
		return conn
	}
	wantAccepted := func(from string) {
		t.Helper()
		conn := dial(from)
		select {
		case s := <-accepted:
			if got := s.RemoteAddr().(*net.TCPAddr).IP.String(); got != from {
				t.Fatalf("accepted a connection from %s, want %s", got, from)
			}
			s.Close()
		case <-time.After(5 * time.Second):
			t.Fatalf("a connection from %s was not accepted", from)
		}
		conn.Close()
	}
	// readErr reads one byte within wait: a timeout means the connection is
	// held open; any other error that it was closed.
	readErr := func(conn net.Conn, wait time.Duration) (timeout bool, err error) {
		_ = conn.SetReadDeadline(time.Now().Add(wait))
		_, err = conn.Read(make([]byte, 1))
		var ne net.Error
		return errors.As(err, &ne) && ne.Timeout(), err
	}

	wantAccepted("127.0.0.1")
	for range 4 {
		g.Refused("127.0.0.1")
	}
	held := dial("127.0.0.1")
	if timeout, err := readErr(held, 300*time.Millisecond); !timeout {
		t.Fatalf("the first connection of a blocked address was not held: read err %v", err)
	}
	if beyond, err := tryDial("127.0.0.1"); err == nil {
		if timeout, err := readErr(beyond, 5*time.Second); timeout || err == nil {
			t.Fatalf("a connection beyond the hold bound was not reset: read err %v", err)
		}
	}
	wantAccepted("127.0.0.2")
	wantValue(t, reg, "gateway_blocked_connections_total", 1)
	wantValue(t, reg, "gateway_blocked_connections_held", 1)

	// A held connection the client gives up is let go: the next one is held.
	held.Close()
	for deadline := time.Now().Add(5 * time.Second); value(t, reg, "gateway_blocked_connections_held") != 0; {
		if time.Now().After(deadline) {
			t.Fatal("a held connection the client closed is still held")
		}
		time.Sleep(10 * time.Millisecond)
	}
	held = dial("127.0.0.1")
	if timeout, err := readErr(held, 300*time.Millisecond); !timeout {
		t.Fatalf("the next connection of a blocked address was not held: read err %v", err)
	}

	c.Add(policy.Block)
	wantAccepted("127.0.0.1")

	ln.Close()
	if timeout, err := readErr(held, 5*time.Second); timeout || err == nil {
		t.Fatalf("a held connection was not closed with the listener: read err %v", err)
	}
}

// TestHandlerHoldsOrRefusesBlockedRequests: a request from a blocked
// address never reaches the API: over a real connection it is held
// unanswered; where the connection cannot be taken (a recorder) it gets
// 429 "blocked" with Retry-After, the RateLimit fields and Connection:
// close. Another address's requests pass.
func TestHandlerHoldsOrRefusesBlockedRequests(t *testing.T) {
	t.Parallel()
	c := testkit.NewClock(time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC))
	p := policy
	p.HoldPerAddress, p.HoldMax, p.HoldFor = 4, 10, time.Minute
	g := abuse.New(p, 100, c.Now, prometheus.NewRegistry())
	var reached atomic.Int64
	h := g.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	for range 4 {
		g.Refused("203.0.113.7")
	}

	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/v1/users/1/feed", nil)
	req.RemoteAddr = "203.0.113.7:1234"
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusTooManyRequests || !strings.Contains(rec.Body.String(), problem.TypeBase+"blocked") {
		t.Fatalf("blocked, not hijackable: %d %s", rec.Code, rec.Body)
	}
	for header, want := range map[string]string{
		"Retry-After": "10", "Connection": "close", "Content-Type": problem.ContentType,
		"RateLimit-Policy": `"blocked";q=3;w=3`, "RateLimit": `"blocked";r=0;t=10`,
	} {
		if got := rec.Header().Get(header); got != want {
			t.Errorf("%s = %q, want %q", header, got, want)
		}
	}
	req.RemoteAddr = "203.0.113.8:1234"
	rec = httptest.NewRecorder()
	if h.ServeHTTP(rec, req); rec.Code != http.StatusNoContent {
		t.Errorf("another address: %d", rec.Code)
	}

	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	client := &http.Client{Timeout: 300 * time.Millisecond}
	resp, err := client.Get(srv.URL)
	if err != nil {
		t.Fatalf("127.0.0.1 not blocked yet: %v", err)
	}
	resp.Body.Close()
	for range 4 {
		g.Refused("127.0.0.1")
	}
	before := reached.Load()
	if resp, err := client.Get(srv.URL); err == nil {
		resp.Body.Close()
		t.Fatalf("blocked over a real connection: answered %d, want it held unanswered", resp.StatusCode)
	} else if ne := net.Error(nil); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("blocked over a real connection: %v, want a timeout (held)", err)
	}
	if reached.Load() != before {
		t.Error("a blocked request reached the API")
	}
}

// TestOffAndNil: a policy with no budget or no block is off, and a nil
// guard blocks nothing and hands the listener back as it is.
func TestOffAndNil(t *testing.T) {
	t.Parallel()
	for _, p := range []abuse.Policy{{}, {Refusals: policy.Refusals}, {Block: time.Second}} {
		if g := abuse.New(p, 10, nil, prometheus.NewRegistry()); g != nil {
			t.Errorf("New(%+v) = a guard, want nil (off)", p)
		}
	}
	var g *abuse.Guard
	g.Refused("203.0.113.7")
	next := http.NewServeMux()
	if h := g.Handler(next); h != http.Handler(next) {
		t.Error("nil guard: Handler wrapped the handler")
	}
	if d := g.BlockedFor("203.0.113.7"); d != 0 {
		t.Errorf("nil guard: blocked for %v", d)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if g.Listener(ln) != ln {
		t.Error("nil guard: Listener wrapped the listener")
	}
}

// value is the value of the counter or gauge named name in reg.
func value(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			m := mf.GetMetric()[0]
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

func wantValue(t *testing.T, reg *prometheus.Registry, name string, want float64) {
	t.Helper()
	if got := value(t, reg, name); got != want {
		t.Errorf("%s = %g, want %g", name, got, want)
	}
}

// TestExportedMetricNames keeps deploy/observability/metrics/gateway-abuse.txt,
// the metrics this package exports, true: the dashboard and alert rules
// are checked against it (go test ./deploy/observability/...).
func TestExportedMetricNames(t *testing.T) {
	t.Parallel()
	rec := testkit.NewNameRecorder()
	abuse.New(policy, 1, nil, rec)
	testkit.CheckMetricNames(t, "gateway-abuse", rec)
}
