// Package processor calls the external payment processor and turns what it
// answers into a payment outcome: succeeded, failed, or unknown when the
// answer could not be learned. It owns the retry and ambiguity rules of the
// two processor APIs (the as-is one without idempotency keys and the proposed
// one with them); pacing comes from a rate limiter shared by every call of the
// replica, retries included.
package processor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/google/uuid"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"golang.org/x/time/rate"

	"github.com/finsvc/finance/pkg/clock"
	"github.com/finsvc/finance/pkg/payment"
	"github.com/finsvc/finance/services/dispatcher/internal/pacer"
)

// API names a dialect of the processor's HTTP interface.
type API string

// The processor APIs the client speaks.
const (
	// APIProposed is POST /v2/payments with an Idempotency-Key: a repeated
	// call with the same key is a replay, so ambiguous calls are retried.
	APIProposed API = "proposed"
	// APIAsIs is POST /payment without any key: a repeated call may execute
	// twice, so an ambiguous call is never repeated.
	APIAsIs API = "as-is"
)

// ErrNotSent reports that the context ended before any call for a payment
// could have reached the processor: nothing was executed and nothing is known.
var ErrNotSent = errors.New("payment not sent to the processor")

// Payment is what the dispatcher asks the processor to execute.
type Payment struct {
	ID int64
	// UID is the payment's globally unique id; the idempotency key names it.
	UID    uuid.UUID
	UserID int64
	// Amount is in signed minor units, as in PaymentRequested.
	Amount int64
}

// IdempotencyKey is the key the proposed API is sent for p. It derives from
// the payment uid only, so every retry and every redelivery of the same
// payment is a replay at the processor, and no payment of a restored
// database (whose ids repeat) is ever taken for another.
func (p Payment) IdempotencyKey() string { return payment.ProcessorKey(p.UID) }

// Result is what is known about a payment after dispatching it.
type Result struct {
	// Status is succeeded, failed or unknown.
	Status payment.Status
	// Reason explains a failed or unknown status.
	Reason string
	// Ref is the processor's reference of an executed payment.
	Ref string
	// Attempts counts the HTTP calls made.
	Attempts int
	// Cause says why an unknown status could not be resolved (one of the
	// Cause constants); empty for succeeded and failed.
	Cause string
}

// Causes of an unknown Result, used as the reason of its dead letter.
const (
	// CauseBudgetSpent: every call allowed was made and none gave a
	// definite answer after one that may have executed the payment.
	CauseBudgetSpent = "retry_budget_spent"
	// CauseNotRetried: an ambiguous call on the as-is API, which has no key
	// to make a second call a replay.
	CauseNotRetried = "ambiguous_not_retried"
	// CauseKeyRefused: the processor refused the idempotency key.
	CauseKeyRefused = "idempotency_key_refused"
	// CauseRejectedAfterAmbiguous: a rejection after an ambiguous call.
	CauseRejectedAfterAmbiguous = "rejected_after_ambiguous"
	// CauseInterrupted: shutdown cut the calls short after an ambiguous one.
	CauseInterrupted = "interrupted"
	// CauseLookupFailed: every call was refused (not executed), but an
	// earlier call under the same key may have executed the payment, and
	// the lookup of the key failed.
	CauseLookupFailed = "lookup_failed"
)

// Client executes payments at the processor.
type Client interface {
	// Execute dispatches p and reports its outcome. It returns an error
	// (wrapping ErrNotSent) only when ctx ended before a call could have
	// reached the processor; every other case is a Result, unknown included.
	Execute(ctx context.Context, p Payment) (Result, error)
}

// Pacer paces calls and learns from their answers; *pacer.Pacer is the
// implementation.
type Pacer interface {
	// Wait blocks until a call may be made.
	Wait(ctx context.Context) error
	// Observe reports one call's answer and its Retry-After.
	Observe(s pacer.Signal, retryAfter time.Duration)
}

// limiterPacer paces with a fixed-rate limiter and learns nothing.
type limiterPacer struct{ lim *rate.Limiter }

func (l limiterPacer) Wait(ctx context.Context) error    { return l.lim.Wait(ctx) }
func (limiterPacer) Observe(pacer.Signal, time.Duration) {}

// Config configures New.
type Config struct {
	// BaseURL is the processor's root, e.g. http://127.0.0.1:8090.
	BaseURL string
	// API selects the dialect and with it the retry rules.
	API API
	// Timeout bounds each HTTP call.
	Timeout time.Duration
	// MaxAttempts bounds the calls made for one payment, 429s included.
	MaxAttempts int
	// Pacer paces every call, retries included; it is shared by every
	// in-flight call of the replica.
	Pacer Pacer
	// Limiter is a fixed-rate alternative to Pacer (tests).
	Limiter *rate.Limiter
	// Breaker, when set, stops calls during an outage.
	Breaker *Breaker
	// BatchMax is the most payments sent in one batch call (proposed API,
	// POST /v2/payment-batches, at most 100); 0 or 1 sends each payment in
	// a call of its own.
	BatchMax int
	// BatchInFlight is how many batch calls run at once: a payment that
	// finds that many running waits for the next batch. 0 means 2.
	BatchInFlight int
	// MaxConns sizes the idle connection pool to the expected concurrency.
	MaxConns int
	// BackoffInitial and BackoffMax shape the exponential backoff with
	// jitter between retries; zero means 100ms and 2s.
	BackoffInitial, BackoffMax time.Duration
	// MaxRetryAfter caps a 429's Retry-After; zero means 30s.
	MaxRetryAfter time.Duration
	// Metrics receives call metrics; nil registers nothing.
	Metrics *Metrics
	// Logger receives one line per retried call.
	Logger *slog.Logger
	// HTTPClient replaces the client New builds (tests).
	HTTPClient *http.Client
}

// New returns the Client for cfg.API.
func New(cfg Config) (Client, error) {
	var errs []error
	if !strings.HasPrefix(cfg.BaseURL, "http://") && !strings.HasPrefix(cfg.BaseURL, "https://") {
		errs = append(errs, fmt.Errorf("processor url %q: want http:// or https://", cfg.BaseURL))
	}
	if cfg.API != APIProposed && cfg.API != APIAsIs {
		errs = append(errs, fmt.Errorf("processor api %q: want %s or %s", cfg.API, APIProposed, APIAsIs))
	}
	if cfg.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("processor timeout %v: want > 0", cfg.Timeout))
	}
	if cfg.MaxAttempts < 1 {
		errs = append(errs, fmt.Errorf("processor max attempts %d: want >= 1", cfg.MaxAttempts))
	}
	if cfg.Pacer == nil && cfg.Limiter == nil {
		errs = append(errs, errors.New("processor pacer or limiter: required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if cfg.BackoffInitial <= 0 {
		cfg.BackoffInitial = 100 * time.Millisecond
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = 2 * time.Second
	}
	if cfg.BatchInFlight <= 0 {
		cfg.BatchInFlight = 2
	}
	if cfg.MaxRetryAfter <= 0 {
		cfg.MaxRetryAfter = 30 * time.Second
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	if cfg.Pacer == nil {
		cfg.Pacer = limiterPacer{cfg.Limiter}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	hc := cfg.HTTPClient
	if hc == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		conns := max(cfg.MaxConns, 100)
		tr.MaxIdleConns = conns
		tr.MaxIdleConnsPerHost = conns
		// The per-call timeout comes from the request context. otelhttp
		// makes each call a client span, child of the dispatch's, and
		// sends its traceparent to the processor. The tracer is taken once
		// here from the global provider (which forwards to the one
		// obs.StartTracing installs, even if that comes later): left
		// unset, otelhttp asks the provider for a tracer at every call,
		// 4% of the dispatcher's CPU under the mixed load test.
		hc = &http.Client{Transport: otelhttp.NewTransport(tr, otelhttp.WithTracerProvider(otel.GetTracerProvider()))}
	}
	base := strings.TrimRight(cfg.BaseURL, "/")
	var d dialect
	switch cfg.API {
	case APIProposed:
		d = proposed{base: base}
	case APIAsIs:
		d = asIs{base: base}
	}
	c := &client{cfg: cfg, hc: hc, dialect: d}
	if cfg.API == APIProposed && cfg.BatchMax > 1 {
		c.batch = newBatcher(c, base+batchPath)
	}
	return c, nil
}

// client is the retry loop shared by both dialects; the dialect decides how
// one call is made and read, and whether an ambiguous call may be repeated.
type client struct {
	cfg     Config
	hc      *http.Client
	dialect dialect
	// batch, when set, sends the calls of the proposed API in batches.
	batch *batcher
}

// send makes one call for p: in a batch when batching is on, else alone.
func (c *client) send(ctx context.Context, p Payment) reply {
	if c.batch != nil && !c.batch.off.Load() {
		return c.batch.call(ctx, p)
	}
	return c.call(ctx, p)
}

// Execute implements Client.
func (c *client) Execute(ctx context.Context, p Payment) (Result, error) {
	bo := backoff.WithContext(backoff.WithMaxRetries(backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(c.cfg.BackoffInitial),
		backoff.WithMaxInterval(c.cfg.BackoffMax),
		backoff.WithMultiplier(2),
		backoff.WithRandomizationFactor(0.5),
		backoff.WithMaxElapsedTime(0), // bounded by attempts and ctx instead
	), uint64(c.cfg.MaxAttempts-1)), ctx)

	var (
		attempts int
		// ambiguous is the last call that may have executed the payment;
		// once set, the payment can never be reported as failed.
		ambiguous *reply
		last      reply
	)
	for {
		// An open breaker holds the call without spending its budget:
		// the user's later payments wait behind it, in order.
		if err := c.cfg.Breaker.wait(ctx); err != nil {
			return c.interrupted(p, attempts, ambiguous, err)
		}
		if err := c.cfg.Pacer.Wait(ctx); err != nil {
			return c.interrupted(p, attempts, ambiguous, err)
		}
		done, ok := c.cfg.Breaker.allow()
		if !ok {
			continue // not sent: the breaker opened or its probe is out
		}
		attempts++
		last = c.send(ctx, p)
		done(last.health())
		c.cfg.Pacer.Observe(last.signal(), last.retryAfter)
		switch last.kind {
		case kindSucceeded:
			return Result{Status: payment.StatusSucceeded, Ref: last.ref, Attempts: attempts}, nil
		case kindDeclined:
			return Result{Status: payment.StatusFailed, Reason: last.detail, Attempts: attempts}, nil
		case kindRejected:
			if ambiguous != nil {
				return unknown(attempts, CauseRejectedAfterAmbiguous, "an earlier call was ambiguous (%s), then the processor rejected the payment: %s", ambiguous.detail, last.detail), nil
			}
			return Result{Status: payment.StatusFailed, Reason: "rejected by processor: " + last.detail, Attempts: attempts}, nil
		case kindConflict:
			return unknown(attempts, CauseKeyRefused, "processor refused the idempotency key: %s", last.detail), nil
		case kindAmbiguous:
			ambiguous = &last
			if ctx.Err() != nil {
				return unknown(attempts, CauseInterrupted, "interrupted while waiting for the processor: %s", last.detail), nil
			}
			if !c.dialect.retriesAmbiguous() {
				return unknown(attempts, CauseNotRetried, "%s; not retried: the %s API has no idempotency key", last.detail, APIAsIs), nil
			}
		case kindRefused:
			// Not executed: safe to call again in both dialects.
		}

		if last.outage() && c.cfg.Breaker.down() {
			// The processor is down: this call may be repeated (it was
			// refused, or it is a replay under the same key) and it is
			// not counted against the payment's budget. The breaker
			// holds it until a probe succeeds.
			c.cfg.Logger.InfoContext(ctx, "processor call held while the processor is down",
				"payment_id", p.ID, "user_id", p.UserID, "attempt", attempts, "result", last.label, "detail", last.detail)
			if err := clock.Sleep(ctx, c.cfg.BackoffInitial); err != nil {
				return c.interrupted(p, attempts, ambiguous, err)
			}
			continue
		}

		wait := bo.NextBackOff()
		if wait == backoff.Stop {
			if ctx.Err() != nil {
				return c.interrupted(p, attempts, ambiguous, ctx.Err())
			}
			if ambiguous != nil {
				return unknown(attempts, CauseBudgetSpent, "no definite answer after %d calls with the same idempotency key; last: %s", attempts, last.detail), nil
			}
			return c.notExecuted(ctx, p, attempts, last)
		}
		if last.kind == kindRefused && last.retryAfter > 0 {
			wait = min(last.retryAfter, c.cfg.MaxRetryAfter)
		}
		c.cfg.Logger.InfoContext(ctx, "processor call will be retried",
			"payment_id", p.ID, "user_id", p.UserID, "attempt", attempts,
			"result", last.label, "detail", last.detail, "wait", wait)
		if err := clock.Sleep(ctx, wait); err != nil {
			return c.interrupted(p, attempts, ambiguous, err)
		}
	}
}

// notExecuted ends Execute when the budget was spent on refusals only (429,
// the as-is over-capacity 503, a refused connection): none of these calls
// executed the payment. An earlier call may have, under the same key: an
// earlier owner of the partition whose call timed out, or the call of a
// record now replayed or rewound. The payment is failed "not executed" only
// when nothing can have executed it:
//   - proposed API: the processor's lookup by key decides: not found →
//     failed "not executed"; succeeded or declined → that outcome; no
//     answer → unknown (CauseLookupFailed), for reconciliation. Always
//     asked, whatever the payment's status: the best-effort PROCESSING
//     outcome an earlier owner publishes before its call may be lost or not
//     yet applied, so "accepted" does not prove that nothing was sent.
//     The path is rare (every call refused), so the lookup is cheap.
//   - as-is API: no lookup, and none needed: the dispatch claim made this
//     dispatcher the payment's only sender, ever.
func (c *client) notExecuted(ctx context.Context, p Payment, attempts int, last reply) (Result, error) {
	reason := fmt.Sprintf("not executed: %s after %d calls", last.detail, attempts)
	if c.dialect.lookupURL(p) == "" {
		return Result{Status: payment.StatusFailed, Reason: reason, Attempts: attempts}, nil
	}
	r, found, err := c.lookup(ctx, p)
	switch {
	case err != nil && ctx.Err() != nil:
		// Shutdown: nothing is known and nothing was sent by this
		// dispatcher; the redelivery starts over.
		return c.interrupted(p, attempts, nil, errors.Join(err, ctx.Err()))
	case err != nil:
		return unknown(attempts, CauseLookupFailed, "no call was executed (%s after %d calls), but an earlier call under the same idempotency key may have been, and the lookup failed: %v",
			last.detail, attempts, err), nil
	case !found:
		return Result{Status: payment.StatusFailed, Reason: reason + "; lookup by key: not found", Attempts: attempts}, nil
	case r.kind == kindSucceeded:
		return Result{Status: payment.StatusSucceeded, Ref: r.ref, Attempts: attempts}, nil
	default:
		return Result{Status: payment.StatusFailed, Reason: r.detail, Attempts: attempts}, nil
	}
}

// interrupted ends Execute when ctx ended between calls: unknown if a call
// may have executed the payment, ErrNotSent if none can have.
func (c *client) interrupted(p Payment, attempts int, ambiguous *reply, cause error) (Result, error) {
	if ambiguous != nil {
		return unknown(attempts, CauseInterrupted, "interrupted before a definite answer (%v); last ambiguous call: %s", cause, ambiguous.detail), nil
	}
	return Result{Attempts: attempts}, fmt.Errorf("payment %d after %d calls: %w: %w", p.ID, attempts, ErrNotSent, cause)
}

func unknown(attempts int, cause, format string, args ...any) Result {
	return Result{Status: payment.StatusUnknown, Reason: fmt.Sprintf(format, args...), Attempts: attempts, Cause: cause}
}
