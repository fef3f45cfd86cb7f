package httpapi

import (
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/finsvc/finance/pkg/envconfig"
	"github.com/finsvc/finance/pkg/problem"
	"github.com/finsvc/finance/services/gateway/internal/ratelimit"
)

// Problem types of the per-client limits.
const (
	typeRateLimited    = "rate-limited"
	typeHeaderTooLarge = "header-too-large"
)

// Limits is the gateway's per-client limits (GATEWAY_RATE_LIMIT_*) and its
// cap on request headers (HTTP_MAX_HEADER_BYTES). A policy with a zero rate
// or burst is off; the zero Limits limits no rate.
type Limits struct {
	// IP limits every business and admin request, and every request to an
	// unknown route, by the peer address (an IPv6 client by its /64),
	// before the token is checked: bad tokens are limited too.
	IP ratelimit.Policy
	// User limits each authenticated user; Admin each admin token's user,
	// instead of User.
	User, Admin ratelimit.Policy
	// MaxKeys caps the buckets each of the three keeps (least recently
	// used evicted first).
	MaxKeys int
	// MaxHeaderBytes: a larger request line plus headers answers 431;
	// envconfig.DefaultHTTPServer's when zero.
	MaxHeaderBytes int
	// Now is the clock; time.Now when nil (tests set it).
	Now func() time.Time
}

// DefaultLimits is what the gateway enforces unless configured otherwise.
// Per user: 20 requests/s with bursts of 40, far above a person's client or
// a poller's once a second. Admin tokens: ten times that. Per address:
// 10,000/s with bursts of 20,000, above what one gateway serves on two
// cores, so that the load tests' one generator (10,000 payments in a
// second) is never throttled; it stops a single address from taking more
// than a gateway's capacity, failed tokens included.
var DefaultLimits = Limits{
	IP:      ratelimit.Policy{Rate: 10_000, Burst: 20_000},
	User:    ratelimit.Policy{Rate: 20, Burst: 40},
	Admin:   ratelimit.Policy{Rate: 200, Burst: 400},
	MaxKeys: 100_000,
}

// limiters applies Limits.
type limiters struct {
	ip, user, admin *scopedLimiter // nil: off
	maxHeaderBytes  int
	now             func() time.Time
	refused         *prometheus.CounterVec
}

func newLimiters(l Limits, reg prometheus.Registerer) *limiters {
	mk := func(name string, p ratelimit.Policy) *scopedLimiter {
		if !p.Enabled() {
			return nil
		}
		return &scopedLimiter{name: name, l: ratelimit.New(p, max(1, l.MaxKeys)),
			policy: fmt.Sprintf("%q;q=%d;w=%d", name, p.Burst, p.Window())}
	}
	ls := &limiters{
		ip: mk("ip", l.IP), user: mk("user", l.User), admin: mk("admin", l.Admin),
		maxHeaderBytes: l.MaxHeaderBytes, now: l.Now,
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_rate_limited_total",
			Help: "Requests refused with 429 by a per-client limit, by policy (ip, user, admin).",
		}, []string{"policy"}),
	}
	if ls.maxHeaderBytes <= 0 {
		ls.maxHeaderBytes = envconfig.DefaultHTTPServer.MaxHeaderBytes
	}
	if ls.now == nil {
		ls.now = time.Now
	}
	reg.MustRegister(ls.refused)
	return ls
}

// scopedLimiter is the buckets of one scope (ip, user, admin), with its
// RateLimit-Policy item, the same on every answer.
type scopedLimiter struct {
	name   string
	l      *ratelimit.Limiter
	policy string
}

// limitIP applies the per-address limit.
func (a *api) limitIP(c *gin.Context) {
	if a.limits.ip == nil {
		c.Next()
		return
	}
	a.limit(c, a.limits.ip, ratelimit.AddrKey(c.RemoteIP()))
}

// limitUser applies the per-user limit, or the admin one to admin tokens;
// it runs after authenticate.
func (a *api) limitUser(c *gin.Context) {
	p, ok := principal(c)
	if !ok {
		c.Next()
		return
	}
	l := a.limits.user
	if p.Admin {
		l = a.limits.admin
	}
	if l == nil {
		c.Next()
		return
	}
	a.limit(c, l, strconv.FormatInt(p.UserID, 10))
}

// limit takes a token of key's bucket in l, or answers 429. Either way the
// response says where the client stands, in the IETF RateLimit fields
// (draft-ietf-httpapi-ratelimit-headers): the policy as quota q per window w
// seconds, and r requests left, whole bucket back in t seconds. An address
// and a user limit both show, one item each.
func (a *api) limit(c *gin.Context, s *scopedLimiter, key string) {
	d := s.l.Allow(key, a.limits.now())
	name, p := s.name, s.l.Policy()
	h := c.Writer.Header()
	h.Add("RateLimit-Policy", s.policy)
	// `"name";r=R;t=T`, as fmt's %q writes these plain names, without fmt.
	item := make([]byte, 0, len(name)+32)
	item = append(item, '"')
	item = append(item, name...)
	item = append(item, `";r=`...)
	item = strconv.AppendInt(item, int64(d.Remaining), 10)
	item = append(item, ";t="...)
	item = strconv.AppendInt(item, int64(ceilSeconds(d.Reset)), 10)
	h.Add("RateLimit", string(item))
	if d.Allowed {
		c.Next()
		return
	}
	a.limits.refused.WithLabelValues(name).Inc()
	retry := ceilSeconds(d.RetryAfter)
	h.Set("Retry-After", strconv.Itoa(retry))
	writeProblem(c, problem.New(http.StatusTooManyRequests, typeRateLimited, "Too many requests",
		fmt.Sprintf("more than %g requests per second (bursts of %d) per %s; retry after %d s",
			p.Rate, p.Burst, scopeNoun(name), retry)))
}

func scopeNoun(name string) string {
	switch name {
	case "ip":
		return "client address"
	case "admin":
		return "admin user"
	}
	return "user"
}

// ceilSeconds is d in whole seconds, rounded up, at least 1 for any wait.
func ceilSeconds(d time.Duration) int {
	if d <= 0 {
		return 0
	}
	return int(math.Ceil(d.Seconds()))
}

// checkSize answers 431 when the request line and headers exceed
// maxHeaderBytes, and 413 when the declared body exceeds the largest body
// any route reads (maxBodyBytes), before any other work; the console's
// routes get its error page instead of the problem. Headers up to
// twice the cap reach here (envconfig.HTTPServer.HeaderReadLimit); beyond
// that net/http refuses them itself, in plain text.
func (a *api) checkSize(c *gin.Context) {
	if n := headerBytes(c.Request); n > a.limits.maxHeaderBytes {
		a.refuse(c, problem.New(http.StatusRequestHeaderFieldsTooLarge, typeHeaderTooLarge,
			"Request header fields too large",
			fmt.Sprintf("the request line and headers are %d bytes; at most %d are accepted", n, a.limits.maxHeaderBytes)))
		return
	}
	if c.Request.ContentLength > maxBodyBytes {
		a.refuse(c, problemFor(tooLarge()))
		return
	}
	c.Next()
}

// headerBytes is the size of r's request line and headers as sent (HTTP/1
// framing), as net/http counts them against MaxHeaderBytes.
func headerBytes(r *http.Request) int {
	n := len(r.Method) + 1 + len(r.RequestURI) + 1 + len(r.Proto) + 2
	n += len("Host: ") + len(r.Host) + 2
	for k, vs := range r.Header {
		for _, v := range vs {
			n += len(k) + 2 + len(v) + 2
		}
	}
	return n + 2
}
