package httpapi

import (
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
	"golang.org/x/time/rate"
)

// DefaultSlowRequest is LogPolicy.Slow when zero.
const DefaultSlowRequest = 500 * time.Millisecond

// LogPolicy says which requests get their line in the request log. Every
// request gets one line at most (errors, panics and a payment's details go
// on it). Writes, errors (4xx except 429, 5xx) and requests slower than
// Slow are always logged. Successful reads (GET or HEAD answered 2xx or
// 304) and refusals by a rate limit (429) are sampled: one in ReadSample is
// logged, with "sample": ReadSample on its line, since under load they are
// most of the traffic (and a flood of 429s would otherwise flood the log);
// the metrics still count each one. Other refusals (4xx) are logged in full
// up to RefusalsPerSecond lines a second, all clients together, and sampled
// as reads beyond that: a client, or many, sending bad requests cannot
// flood the log either. Long-polls and event streams are never "slow":
// they wait on purpose.
type LogPolicy struct {
	// ReadSample: 1 (or 0) logs every read, N one in N.
	ReadSample int
	// RefusalsPerSecond: 4xx answers (429 aside) logged in full per second,
	// with a burst as large; 0 logs every one.
	RefusalsPerSecond int
	// Slow: requests that took longer are always logged;
	// DefaultSlowRequest when zero.
	Slow time.Duration
}

// logSampler applies a LogPolicy.
type logSampler struct {
	every uint64
	slow  time.Duration
	n     atomic.Uint64
	// refusals is the full-logging budget of 4xx lines; nil: unlimited.
	refusals *rate.Limiter
}

func newLogSampler(p LogPolicy) *logSampler {
	s := &logSampler{every: uint64(max(1, p.ReadSample)), slow: p.Slow}
	if s.slow <= 0 {
		s.slow = DefaultSlowRequest
	}
	if p.RefusalsPerSecond > 0 {
		s.refusals = rate.NewLimiter(rate.Limit(p.RefusalsPerSecond), p.RefusalsPerSecond)
	}
	return s
}

// keep reports whether the request's line is logged, and the sample it
// stands for (0 when it was not sampled).
func (s *logSampler) keep(c *gin.Context, status int, elapsed time.Duration) (keep bool, sample int) {
	if _, failed := c.Get(keyErrorLog); failed {
		return true, 0
	}
	if elapsed > s.slow && !isPush(c) {
		return true, 0
	}
	m := c.Request.Method
	read := (m == http.MethodGet || m == http.MethodHead) &&
		(status >= 200 && status < 300 || status == http.StatusNotModified)
	refused := status >= 400 && status < 500 && status != http.StatusTooManyRequests
	switch {
	case refused && (s.refusals == nil || s.refusals.Allow()):
		return true, 0
	case !read && !refused && status != http.StatusTooManyRequests:
		return true, 0
	}
	if s.every == 1 {
		return true, 0
	}
	// The first sampled request is logged, then one in every.
	return (s.n.Add(1)-1)%s.every == 0, int(s.every)
}

// failure is what a request's log line says about its failure (a panic, a
// server fault, a client gone) and the least level of that line. A request
// that failed so is always logged.
type failure struct {
	level slog.Level
	attrs []slog.Attr
}
