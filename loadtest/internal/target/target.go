// Package target is the HTTP client of a system under test: the pipeline's
// gateway (POST /v1/payments with an Idempotency-Key, GET
// /v1/users/{id}/feed) or the as-is service (POST /payment, GET
// /payment_feed?user_id=). Both take the same bearer tokens.
package target

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Kind names a system under test.
type Kind string

// The systems under test.
const (
	Pipeline Kind = "pipeline"
	Legacy   Kind = "legacy"
)

// ParseKind checks a --target value.
func ParseKind(s string) (Kind, error) {
	switch Kind(s) {
	case Pipeline, Legacy:
		return Kind(s), nil
	}
	return "", fmt.Errorf("unknown target %q; want pipeline or legacy", s)
}

// Class is what a response means to the client.
type Class string

// The response classes.
const (
	// OK is a 2xx: the pipeline accepted the payment (202, or 200 on a
	// replay), the as-is service executed and stored it (201), or a feed.
	OK Class = "ok"
	// Declined is the processor's decline (402 from the as-is service).
	Declined Class = "declined"
	// Rejected is any other 4xx, e.g. 422 insufficient funds.
	Rejected Class = "rejected"
	// Unavailable is 429 or 503: refused, try later.
	Unavailable Class = "unavailable"
	// ServerError is any other 5xx (500, 502, 504).
	ServerError Class = "server_error"
	// Timeout is no answer within the client's timeout.
	Timeout Class = "timeout"
	// NetError is a connection error (refused, reset, closed).
	NetError Class = "net_error"
)

// Classes lists the classes in report order.
func Classes() []Class {
	return []Class{OK, Declined, Rejected, Unavailable, ServerError, Timeout, NetError}
}

// Response is one request's result.
type Response struct {
	Code  int
	Class Class
	// PaymentID is the pipeline's payment id from a 2xx payment answer.
	PaymentID int64
	// PaymentUID and StatusURL name the payment of a pipeline's 2xx
	// payment answer: its uid (the processor's key is payment-<uid>) and
	// the path to poll for its status.
	PaymentUID string
	StatusURL  string
	// Balance is the balance of a 2xx feed answer.
	Balance int64
	Err     string
	// Retried is true when the request was sent a second time, with the
	// same Idempotency-Key, because the target closed its connection before
	// answering the first (see Pay).
	Retried bool
}

// Payment is one payment request.
type Payment struct {
	UserID     int64
	MerchantID int64
	Amount     int64
	// Key is the Idempotency-Key; the as-is API has none and ignores it.
	Key string
}

// Client sends requests to one target.
type Client struct {
	kind Kind
	base string
	host string
	http *http.Client
	warm *warmPool
}

// New returns a client of the target of kind at baseURL that keeps at most
// maxConns connections open and gives each request timeout.
func New(kind Kind, baseURL string, maxConns int, timeout time.Duration) *Client {
	c := &Client{kind: kind, base: strings.TrimRight(baseURL, "/"), warm: &warmPool{}}
	if u, err := url.Parse(c.base); err == nil {
		c.host = u.Host
		if u.Port() == "" {
			c.host = net.JoinHostPort(u.Hostname(), map[bool]string{true: "443", false: "80"}[u.Scheme == "https"])
		}
	}
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	t := &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if addr == c.host {
				if conn := c.warm.get(); conn != nil {
					return conn, nil
				}
			}
			return dialer.DialContext(ctx, network, addr)
		},
		MaxIdleConns:        maxConns,
		MaxIdleConnsPerHost: maxConns,
		MaxConnsPerHost:     maxConns,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	c.http = &http.Client{Transport: t, Timeout: timeout}
	return c
}

// Kind is the target's kind.
func (c *Client) Kind() Kind { return c.kind }

// URL is the target's base URL.
func (c *Client) URL() string { return c.base }

// Close drops idle and unused warm connections.
func (c *Client) Close() {
	c.warm.close()
	c.http.CloseIdleConnections()
}

// Ready checks that the target answers its readiness route.
func (c *Client) Ready(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/readyz", nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s target at %s is unreachable: %w", c.kind, c.base, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s target at %s is not ready: GET /readyz answered %d %s", c.kind, c.base, resp.StatusCode, bytes.TrimSpace(b))
	}
	return nil
}

// Warm dials up to n connections to the target ahead of the load, at most
// 500 at a time, for the transport to use as it needs new ones: the users
// of a real burst hold their connections already, and the generator's own
// dials would otherwise be measured as the target's latency. Servers drop
// a connection that sends no request within their read-header timeout, so
// a warm connection is used within warmTTL or closed unused.
func (c *Client) Warm(ctx context.Context, n int) error {
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	sem := make(chan struct{}, 500)
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			conn, err := d.DialContext(ctx, "tcp", c.host)
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
				return
			}
			c.warm.put(conn)
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return fmt.Errorf("open connections to %s: %w", c.base, firstErr)
	}
	return nil
}

// warmTTL is how long a pre-dialed connection may wait for its first
// request: below the servers' 5 s read-header timeout, with room for a
// generator starved of CPU to write its request (Pay retries when it could
// not).
const warmTTL = 2 * time.Second

type warmConn struct {
	conn net.Conn
	at   time.Time
}

// warmPool hands out pre-dialed connections to the transport's dialer.
type warmPool struct {
	mu    sync.Mutex
	conns []warmConn
}

func (p *warmPool) put(c net.Conn) {
	p.mu.Lock()
	p.conns = append(p.conns, warmConn{conn: c, at: time.Now()})
	p.mu.Unlock()
}

// get returns a fresh pre-dialed connection, closing stale ones.
func (p *warmPool) get() net.Conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.conns) > 0 {
		wc := p.conns[len(p.conns)-1]
		p.conns = p.conns[:len(p.conns)-1]
		if time.Since(wc.at) < warmTTL {
			return wc.conn
		}
		wc.conn.Close()
	}
	return nil
}

func (p *warmPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, wc := range p.conns {
		wc.conn.Close()
	}
	p.conns = nil
}

// Pay sends a payment as the user whose token is tok.
func (c *Client) Pay(ctx context.Context, tok string, p Payment) Response {
	body, _ := json.Marshal(map[string]int64{"user_id": p.UserID, "merchant_id": p.MerchantID, "amount": p.Amount})
	path := "/payment"
	if c.kind == Pipeline {
		path = "/v1/payments"
	}
	newReq := func() (*http.Request, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+tok)
		if c.kind == Pipeline {
			req.Header.Set("Idempotency-Key", p.Key)
		}
		return req, nil
	}
	req, err := newReq()
	if err != nil {
		return Response{Class: NetError, Err: err.Error()}
	}
	r, b, err := c.do(req)
	if c.kind == Pipeline && closedBeforeAnswer(err) {
		// The target closed the connection before any answer: a client
		// starved of CPU wrote its request after the server's read-header
		// timeout had run out on a pre-dialed connection. A real client
		// sends the same request again with the same Idempotency-Key, which
		// the pipeline answers once whatever it had received; the latency
		// still counts from the first intended send. The as-is API has no
		// key, so its requests are never sent twice.
		if req, err = newReq(); err == nil {
			r, b, _ = c.do(req)
			r.Retried = true
		}
	}
	if r.Class == OK && c.kind == Pipeline {
		var v struct {
			ID        int64  `json:"id"`
			UID       string `json:"uid"`
			StatusURL string `json:"status_url"`
		}
		if err := json.Unmarshal(b, &v); err != nil || v.ID == 0 {
			r.Err = fmt.Sprintf("2xx without a payment id: %s", truncate(b))
		}
		r.PaymentID, r.PaymentUID, r.StatusURL = v.ID, v.UID, v.StatusURL
	}
	return r
}

// PaymentStatus is a payment as GET of its status URL shows it.
type PaymentStatus struct {
	Status string
	// UpdatedAt is the payment's last change, as the gateway wrote it.
	UpdatedAt time.Time
}

// Status reads the pipeline payment at statusURL (the path a 2xx payment
// answer named) as the user whose token is tok, as a client polls it.
func (c *Client) Status(ctx context.Context, tok, statusURL string) (PaymentStatus, Response) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+statusURL, nil)
	if err != nil {
		return PaymentStatus{}, Response{Class: NetError, Err: err.Error()}
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	r, b, _ := c.do(req)
	if r.Class != OK {
		return PaymentStatus{}, r
	}
	var v struct {
		Status    string    `json:"status"`
		UpdatedAt time.Time `json:"updated_at"`
	}
	if err := json.Unmarshal(b, &v); err != nil || v.Status == "" {
		r.Err = fmt.Sprintf("payment without a status: %s", truncate(b))
		return PaymentStatus{}, r
	}
	return PaymentStatus{Status: v.Status, UpdatedAt: v.UpdatedAt}, r
}

// Feed reads the feed of user as the user whose token is tok.
func (c *Client) Feed(ctx context.Context, tok string, user int64) Response {
	u := c.base + "/payment_feed?user_id=" + strconv.FormatInt(user, 10)
	if c.kind == Pipeline {
		u = c.base + "/v1/users/" + strconv.FormatInt(user, 10) + "/feed"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return Response{Class: NetError, Err: err.Error()}
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	r, b, _ := c.do(req)
	if r.Class == OK {
		var v struct {
			Balance *int64 `json:"balance"`
		}
		if err := json.Unmarshal(b, &v); err != nil || v.Balance == nil {
			r.Err = fmt.Sprintf("feed without a balance: %s", truncate(b))
		} else {
			r.Balance = *v.Balance
		}
	}
	return r
}

// do sends req; err is the transport's error when no answer came.
func (c *Client) do(req *http.Request) (Response, []byte, error) {
	resp, err := c.http.Do(req)
	if err != nil {
		var ne net.Error
		if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
			return Response{Class: Timeout, Err: err.Error()}, nil, err
		}
		return Response{Class: NetError, Err: err.Error()}, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return Response{Code: resp.StatusCode, Class: Timeout, Err: err.Error()}, nil, nil
		}
		return Response{Code: resp.StatusCode, Class: NetError, Err: err.Error()}, nil, nil
	}
	r := Response{Code: resp.StatusCode, Class: classify(resp.StatusCode)}
	if r.Class != OK {
		r.Err = truncate(b)
	}
	return r, b, nil
}

// closedBeforeAnswer reports whether err says the target closed or reset
// the connection before sending any answer.
func closedBeforeAnswer(err error) bool {
	return err != nil && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET))
}

func classify(code int) Class {
	switch {
	case code >= 200 && code < 300:
		return OK
	case code == http.StatusPaymentRequired:
		return Declined
	case code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable:
		return Unavailable
	case code >= 400 && code < 500:
		return Rejected
	default:
		return ServerError
	}
}

func truncate(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}
