package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/finsvc/finance/pkg/auth"
	"github.com/finsvc/finance/pkg/problem"
)

type ctxKey int

const (
	keyPrincipal ctxKey = iota
	keyRequestID
	// keyPaymentLog holds the attributes of a payment the request created,
	// added to its request's log line: one line per payment at info.
	keyPaymentLog
	// keyErrorLog holds the attributes of a failure (a server fault, a
	// panic, a client gone), added to the request's one log line.
	keyErrorLog
)

// metrics are the gateway's own Prometheus series.
type metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	accepted *prometheus.CounterVec
	replayed *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_http_requests_total",
			Help: "HTTP requests served, by route pattern, method and status code.",
		}, []string{"route", "method", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gateway_http_request_duration_seconds",
			Help:    "Time to serve an HTTP request, by route pattern, method and status code.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route", "method", "status"}),
		accepted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_payments_accepted_total",
			Help: "Payments accepted and written to the outbox (replays not counted), by API (v1 or legacy).",
		}, []string{"api"}),
		replayed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_payments_replayed_total",
			Help: "Payment requests answered from an earlier request with the same Idempotency-Key, by API.",
		}, []string{"api"}),
	}
	reg.MustRegister(m.requests, m.latency, m.accepted, m.replayed)
	return m
}

// observe assigns the request id, measures every request and logs it in
// one line, unless the log policy samples it out (logsample.go).
func (a *api) observe(c *gin.Context) {
	start := time.Now()
	id := c.GetHeader("X-Request-Id")
	if !validRequestID(id) {
		id = randomHex(8)
	}
	c.Set(keyRequestID, id)
	c.Header("X-Request-Id", id)

	c.Next()

	route := c.FullPath()
	if route == "" {
		route = "unmatched" // keeps scanners' random paths out of the label set
	}
	status := c.Writer.Status()
	elapsed := time.Since(start)
	code := strconv.Itoa(status)
	a.metrics.requests.WithLabelValues(route, c.Request.Method, code).Inc()
	a.metrics.latency.WithLabelValues(route, c.Request.Method, code).Observe(elapsed.Seconds())
	a.countRefusal(c, status)

	keep, sample := a.logs.keep(c, status, elapsed)
	if !keep {
		return
	}
	level := slog.LevelInfo
	switch {
	case status >= http.StatusInternalServerError:
		level = slog.LevelError
	case route == "/healthz" || route == "/readyz" || route == "/metrics":
		level = slog.LevelDebug
	}
	attrs := []slog.Attr{
		slog.String("method", c.Request.Method),
		slog.String("route", route),
		slog.String("path", c.Request.URL.Path),
		slog.Int("status", status),
		slog.Float64("duration_ms", float64(elapsed.Microseconds())/1000),
		slog.String("request_id", id),
		slog.String("remote_addr", c.ClientIP()),
	}
	if p, ok := principal(c); ok {
		attrs = append(attrs, slog.Int64("auth_user_id", p.UserID), slog.Bool("admin", p.Admin))
	}
	if v, ok := c.Get(keyPaymentLog); ok {
		attrs = append(attrs, v.([]slog.Attr)...)
	}
	if v, ok := c.Get(keyErrorLog); ok {
		f := v.(failure)
		attrs = append(attrs, f.attrs...)
		level = max(level, f.level)
	}
	if sample > 0 {
		attrs = append(attrs, slog.Int("sample", sample))
	}
	a.logger.LogAttrs(c.Request.Context(), level, "http request", attrs...)
}

// recoverPanics turns a panic in a handler into a logged 500 problem, so one
// bad request never takes the process down.
func (a *api) recoverPanics(c *gin.Context) {
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		if r == http.ErrAbortHandler { //nolint:errorlint // the sentinel is compared as net/http does
			panic(r)
		}
		// On the request's one line, logged by observe at error level.
		c.Set(keyErrorLog, failure{slog.LevelError, []slog.Attr{slog.String("panic", fmt.Sprint(r)), slog.String("stack", string(debug.Stack()))}})
		if c.Writer.Written() {
			c.Abort()
			return
		}
		writeProblem(c, problem.New(http.StatusInternalServerError, typeInternal, "Internal error",
			"the request failed on our side; retry with the same Idempotency-Key"))
	}()
	c.Next()
}

// authenticate requires a valid bearer token and stores its principal.
func (a *api) authenticate(c *gin.Context) {
	h := c.GetHeader("Authorization")
	if h == "" {
		c.Header("WWW-Authenticate", `Bearer realm="finance"`)
		a.fail(c, unauthorized(`missing "Authorization: Bearer <token>" header`))
		return
	}
	p, err := a.verifier.FromHeader(h)
	if err != nil {
		c.Header("WWW-Authenticate", `Bearer realm="finance", error="invalid_token"`)
		a.fail(c, unauthorized(err.Error()))
		return
	}
	c.Set(keyPrincipal, p)
	c.Next()
}

// withTimeout bounds the request's work, so a stuck database cannot pile up
// goroutines and connections.
func (a *api) withTimeout(c *gin.Context) {
	if isPush(c) { // long-polls and streams bound each read instead
		c.Next()
		return
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), a.timeout)
	defer cancel()
	c.Request = c.Request.WithContext(ctx)
	c.Next()
}

func principal(c *gin.Context) (auth.Principal, bool) {
	v, ok := c.Get(keyPrincipal)
	if !ok {
		return auth.Principal{}, false
	}
	p, ok := v.(auth.Principal)
	return p, ok
}

func requestID(c *gin.Context) string {
	return c.GetString(keyRequestID)
}

func validRequestID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x21 || id[i] > 0x7e {
			return false
		}
	}
	return true
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b)
}
