// Package httpapi is the gateway's HTTP API: the v1 feed and payment routes,
// the as-is routes existing clients use, the admin dead-letter routes, and
// the ops endpoints, and mounts the operator console. It is the
// only package that knows about gin; New returns a plain http.Handler.
package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/finsvc/finance/pkg/auth"
	"github.com/finsvc/finance/pkg/dlq"
	"github.com/finsvc/finance/pkg/obs"
	"github.com/finsvc/finance/pkg/problem"
	"github.com/finsvc/finance/pkg/webhook"
	"github.com/finsvc/finance/services/gateway/internal/abuse"
	"github.com/finsvc/finance/services/gateway/internal/cache"
	"github.com/finsvc/finance/services/gateway/internal/console"
	"github.com/finsvc/finance/services/gateway/internal/push"
	"github.com/finsvc/finance/services/gateway/internal/store"
	"github.com/finsvc/finance/services/gateway/internal/tokencache"
)

// DefaultRequestTimeout bounds the work of one business request when
// Config.RequestTimeout is zero.
const DefaultRequestTimeout = 10 * time.Second

// DefaultAdminTimeout bounds one admin request when Config.AdminTimeout is zero.
const DefaultAdminTimeout = time.Minute

// Config is what the API needs. Every field but RequestTimeout is required.
type Config struct {
	// Webhooks stores webhook endpoints and their delivery log; nil
	// disables the /v1/webhooks routes (503). WebhookPolicy checks the
	// endpoints' URLs.
	Webhooks      *webhook.Store
	WebhookPolicy webhook.Policy

	Logger   *slog.Logger
	Store    *store.Store
	Verifier *auth.Verifier
	// Tokens, when set, checks bearer tokens instead of Verifier,
	// remembering the verified ones (internal/tokencache).
	Tokens *tokencache.Cache
	// Registry receives the API's metrics and is served on /metrics.
	Registry *prometheus.Registry
	// RequestTimeout bounds each business request's database work.
	RequestTimeout time.Duration
	// DLQ serves the admin dead-letter routes; nil answers them 503.
	DLQ *dlq.Operator
	// AdminTimeout bounds each admin request; DefaultAdminTimeout when zero.
	AdminTimeout time.Duration
	// Hub serves long-polls and event streams (push.go); nil (no
	// KAFKA_BROKERS): long-polls answer at once, streams answer 503.
	Hub *push.Hub
	// WaitMax caps a long-poll's wait; DefaultWaitMax when zero.
	WaitMax time.Duration
	// Heartbeat is how often an idle stream sends a comment;
	// DefaultHeartbeat when zero.
	Heartbeat time.Duration
	// Cache keeps encoded first feed pages and balances (reads.go); nil
	// keeps none. With a Hub, its events evict their user's documents.
	Cache *cache.Cache
	// Limits is the per-client rate limits and the header cap (limits.go);
	// the zero value limits no rate.
	Limits Limits
	// Guard is told of every refusal (guard.go), and shuts out an address
	// that keeps getting refused, in front of this handler
	// (Guard.Handler) and at the listener; nil shuts out none.
	Guard *abuse.Guard
	// Log says which requests are logged (logsample.go); the zero value
	// logs every request.
	Log LogPolicy
	// Console is the operator console, served under /console (console.go);
	// nil serves none.
	Console *console.Console
}

type api struct {
	// webhooks is the endpoints API's store (webhooks.go); nil answers 503.
	webhooks      *webhook.Store
	webhookPolicy webhook.Policy

	logger   *slog.Logger
	store    *store.Store
	verifier tokenVerifier
	metrics  *metrics
	timeout  time.Duration
	engine   *gin.Engine

	dlq          *dlq.Operator
	adminTimeout time.Duration

	hub       *push.Hub
	waitMax   time.Duration
	heartbeat time.Duration

	cache       *cache.Cache
	readMetrics *readMetrics

	limits *limiters
	guard  *abuse.Guard
	logs   *logSampler

	console     *console.Console
	crossOrigin *http.CrossOriginProtection
}

// tokenVerifier checks an Authorization header: the auth.Verifier, or the
// cache of verified tokens in front of it.
type tokenVerifier interface {
	FromHeader(header string) (auth.Principal, error)
}

// New returns the gateway's HTTP handler.
func New(cfg Config) http.Handler {
	return newAPI(cfg).engine
}

func newAPI(cfg Config) *api {
	// gin's debug mode prints route tables to stdout, which would corrupt
	// the JSON log stream. The mode is process-wide (and atomic) in gin.
	if gin.IsDebugging() {
		gin.SetMode(gin.ReleaseMode)
	}
	a := &api{
		webhooks:      cfg.Webhooks,
		webhookPolicy: cfg.WebhookPolicy,

		logger:   cfg.Logger,
		store:    cfg.Store,
		verifier: cfg.Verifier,
		metrics:  newMetrics(cfg.Registry),
		timeout:  cfg.RequestTimeout,

		dlq:          cfg.DLQ,
		adminTimeout: cfg.AdminTimeout,

		hub:       cfg.Hub,
		waitMax:   cfg.WaitMax,
		heartbeat: cfg.Heartbeat,

		cache:       cfg.Cache,
		readMetrics: newReadMetrics(cfg.Registry, readStatsOf(cfg.Store)),

		limits: newLimiters(cfg.Limits, cfg.Registry),
		guard:  cfg.Guard,
		logs:   newLogSampler(cfg.Log),

		console: cfg.Console,
	}
	if cfg.Tokens != nil {
		a.verifier = cfg.Tokens
	}
	evictOnEvents(cfg.Hub, cfg.Cache)
	if a.waitMax <= 0 {
		a.waitMax = DefaultWaitMax
	}
	if a.heartbeat <= 0 {
		a.heartbeat = DefaultHeartbeat
	}
	if a.timeout <= 0 {
		a.timeout = DefaultRequestTimeout
	}
	if a.adminTimeout <= 0 {
		a.adminTimeout = DefaultAdminTimeout
	}

	e := gin.New()
	// A clean 404/405 problem beats a redirect clients may not follow.
	e.RedirectTrailingSlash = false
	e.RedirectFixedPath = false
	e.HandleMethodNotAllowed = true
	e.ContextWithFallback = true
	// Client addresses are only logged; without a configured proxy list
	// X-Forwarded-For is a client's claim, so log the peer address.
	_ = e.SetTrustedProxies(nil) // nil cannot fail to parse
	e.Use(a.traceRequest, a.observe, a.recoverPanics, a.checkSize)
	// Requests limited per address (limits.go) come before the token check,
	// so that bad tokens and scans of unknown routes count too; /healthz,
	// /readyz and /metrics are not limited.
	e.NoRoute(a.limitIP, a.handle(func(c *gin.Context) error {
		return notFound("no route " + c.Request.Method + " " + c.Request.URL.Path)
	}))
	e.NoMethod(a.handle(func(c *gin.Context) error {
		return &apiError{http.StatusMethodNotAllowed, typeMethodNotAllowed, "Method not allowed",
			c.Request.Method + " is not allowed on " + c.Request.URL.Path + "; allowed: " + c.Writer.Header().Get("Allow")}
	}))

	ops := gin.WrapH(obs.OpsMux(cfg.Registry, cfg.Store.Ping))
	e.GET("/healthz", ops)
	e.GET("/readyz", ops)
	e.GET("/metrics", ops)

	// audit records admin actions (audit.go): webhook endpoint changes here,
	// every admin route below, refused attempts included.
	biz := e.Group("/", a.limitIP, a.authenticate, a.limitUser, a.audit, a.withTimeout)
	biz.GET("/v1/users/:user_id/feed", a.handle(a.getFeed))
	biz.GET("/v1/users/:user_id/balance", a.handle(a.getBalance))
	biz.POST("/v1/payments", a.handle(a.createPayment))
	biz.GET(routePayment, a.handle(a.getPaymentOrWait)) // ?wait=: a long-poll (push.go)
	biz.GET(routeEvents, a.handle(a.streamEvents))
	// The as-is API, kept for existing clients.
	biz.GET("/payment_feed", a.handle(a.getLegacyFeed))
	biz.POST("/payment", a.handle(a.createLegacyPayment))
	a.webhookRoutes(biz)

	admin := e.Group("/v1/admin", a.limitIP, a.authenticate, a.limitUser, a.audit, a.requireAdmin, a.withAdminTimeout)
	admin.GET("/dlq", a.handle(a.listDLQ))
	admin.GET("/dlq/:topic/:partition/:offset", a.handle(a.getDLQ))
	admin.POST("/dlq/replay", a.handle(a.replayDLQ))

	a.consoleRoutes(e)

	a.engine = e
	return a
}

// handle adapts a handler that returns errors: every error becomes a problem
// through problemFor.
func (a *api) handle(fn func(c *gin.Context) error) gin.HandlerFunc {
	return func(c *gin.Context) {
		if err := fn(c); err != nil {
			a.fail(c, err)
		}
	}
}

// fail answers err as a problem and stops the handler chain. A server
// fault's error, or the client's leaving, goes on the request's one log
// line (observe); client errors show there by their status.
func (a *api) fail(c *gin.Context, err error) {
	p := problemFor(err)
	switch {
	case errors.Is(err, context.Canceled) && c.Request.Context().Err() != nil:
		c.Set(keyErrorLog, failure{slog.LevelInfo, []slog.Attr{slog.Bool("client_gone", true)}})
	case p.Status >= http.StatusInternalServerError:
		c.Set(keyErrorLog, failure{slog.LevelError, []slog.Attr{slog.String("err", err.Error())}})
	}
	writeProblem(c, p)
}

func writeProblem(c *gin.Context, p problem.Details) {
	p.Instance = c.Request.URL.Path
	problem.Write(c.Writer, p)
	c.Abort()
}

func writeJSON(c *gin.Context, status int, v any) {
	c.Header("Content-Type", "application/json")
	c.Status(status)
	enc := json.NewEncoder(c.Writer)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v) // the client is gone if this fails; nothing to do
}
