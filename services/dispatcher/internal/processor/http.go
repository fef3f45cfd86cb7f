package processor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/finsvc/finance/services/dispatcher/internal/pacer"
)

// kind classifies one call by what it says about execution.
type kind int

const (
	kindSucceeded kind = iota // executed
	kindDeclined              // not executed, final
	kindRejected              // 4xx: not executed, a retry would not change it
	kindConflict              // 422: the idempotency key was used for another body
	kindRefused               // not executed, may succeed later (429, as-is 503, refused connection)
	kindAmbiguous             // may or may not have executed
)

// reply is one call's classified answer.
type reply struct {
	kind       kind
	label      string // metric label, a fixed set
	ref        string // processor reference when succeeded
	detail     string // human-readable reason
	retryAfter time.Duration
}

// outage reports whether the reply counts as a failure for the circuit
// breaker: the processor is unreachable, erroring or not answering.
func (r reply) outage() bool {
	switch r.label {
	case "unreachable", "server_error", "timeout", "transport_error", "lost_reply", "unavailable":
		return true
	}
	return false
}

// health is what the reply tells the circuit breaker. A call the
// dispatcher cancelled itself says nothing about the processor.
func (r reply) health() health {
	switch {
	case r.label == "cancelled":
		return healthUnknown
	case r.outage():
		return healthOutage
	}
	return healthOK
}

// signal is what the reply tells the pacer.
func (r reply) signal() pacer.Signal {
	switch {
	case r.label == "rate_limited" || r.label == "over_capacity":
		return pacer.RateLimited
	case r.outage() || r.label == "cancelled":
		return pacer.Failed
	}
	return pacer.OK
}

// dialect is one of the processor's HTTP APIs.
type dialect interface {
	// request builds the call for p.
	request(ctx context.Context, p Payment) (*http.Request, error)
	// read classifies a 2xx body.
	read(p Payment, body []byte) reply
	// serverError classifies a status code outside 2xx and 4xx.
	serverError(code int, body []byte) reply
	// retriesAmbiguous reports whether an ambiguous call may be repeated.
	retriesAmbiguous() bool
	// lookupURL is where the processor says what became of p's key; ""
	// when the API has no lookup.
	lookupURL(p Payment) string
}

// maxBody bounds what is read of a processor reply.
const maxBody = 64 << 10

// call makes one HTTP call within the per-call timeout and classifies it.
func (c *client) call(ctx context.Context, p Payment) reply {
	cctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	req, err := c.dialect.request(cctx, p)
	if err != nil {
		// Nothing can have been sent; a bad request is a bug, not a retry.
		return reply{kind: kindRejected, label: "rejected", detail: fmt.Sprintf("build request: %v", err)}
	}

	m := c.cfg.Metrics
	m.inFlight.Inc()
	start := time.Now()
	r := c.do(req, p)
	m.inFlight.Dec()
	m.observe(r, time.Since(start).Seconds())
	return r
}

func (c *client) do(req *http.Request, p Payment) reply {
	resp, err := c.hc.Do(req)
	if err != nil {
		return transportReply(req.Context(), err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		// The status line arrived but the body did not: whatever it said is lost.
		if cancelled(req.Context()) {
			return reply{kind: kindAmbiguous, label: "cancelled", detail: fmt.Sprintf("HTTP %d, call cancelled by the dispatcher while reading the reply", resp.StatusCode)}
		}
		return reply{kind: kindAmbiguous, label: "lost_reply", detail: fmt.Sprintf("HTTP %d, reading the reply: %v", resp.StatusCode, err)}
	}
	return c.classify(p, resp.StatusCode, resp.Header.Get("Retry-After"), body)
}

// classify reads what the processor answered for p: the status, the
// Retry-After and the body of a single call, or of p's result in a batch.
func (c *client) classify(p Payment, code int, retryAfter string, body []byte) reply {
	switch {
	case code >= 200 && code < 300:
		return c.dialect.read(p, body)
	case code == http.StatusTooManyRequests:
		return reply{kind: kindRefused, label: "rate_limited", detail: "processor rate limit (429)", retryAfter: parseRetryAfter(retryAfter)}
	case code == http.StatusUnprocessableEntity:
		return reply{kind: kindConflict, label: "conflict", detail: fmt.Sprintf("HTTP 422: %s", errorText(body))}
	case code == http.StatusRequestTimeout:
		return reply{kind: kindAmbiguous, label: "server_error", detail: fmt.Sprintf("HTTP 408: %s", errorText(body))}
	case code >= 400 && code < 500:
		return reply{kind: kindRejected, label: "rejected", detail: fmt.Sprintf("HTTP %d: %s", code, errorText(body))}
	default:
		return c.dialect.serverError(code, body)
	}
}

// lookup asks the processor what became of p's idempotency key, within the
// per-call timeout. found is false for the lookup's documented 404
// {"error":"not_found"}: the processor never settled a payment under the key
// (or forgot it; see the guard's key retention). Any other answer, a bare
// 404 included (no such route), is an error: it proves nothing. A found
// reply is succeeded or declined. Lookups are not paced: the processor does
// not rate-limit them.
func (c *client) lookup(ctx context.Context, p Payment) (r reply, found bool, err error) {
	result := "error"
	defer func() { c.cfg.Metrics.lookups.WithLabelValues(result).Inc() }()
	cctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	key := p.IdempotencyKey()
	req, err := http.NewRequestWithContext(cctx, http.MethodGet, c.dialect.lookupURL(p), nil)
	if err != nil {
		return reply{}, false, fmt.Errorf("lookup %s: %w", key, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return reply{}, false, fmt.Errorf("lookup %s: %w", key, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return reply{}, false, fmt.Errorf("lookup %s: HTTP %d, reading the reply: %w", key, resp.StatusCode, err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		r = readPayment(body, key)
		if r.kind != kindSucceeded && r.kind != kindDeclined {
			return reply{}, false, fmt.Errorf("lookup %s: %s", key, r.detail)
		}
		var b struct {
			UserID int64 `json:"user_id"`
			Amount int64 `json:"amount"`
		}
		if json.Unmarshal(body, &b) == nil && (b.UserID != 0 && b.UserID != p.UserID || b.Amount != 0 && b.Amount != p.Amount) {
			return reply{}, false, fmt.Errorf("lookup %s: the processor holds it for user %d amount %d, not user %d amount %d", key, b.UserID, b.Amount, p.UserID, p.Amount)
		}
		result = r.label
		return r, true, nil
	case http.StatusNotFound:
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(body, &e) == nil && e.Error == "not_found" {
			result = "not_found"
			return reply{}, false, nil
		}
		return reply{}, false, fmt.Errorf("lookup %s: HTTP 404 without {\"error\":\"not_found\"} (no lookup route?): %s", key, errorText(body))
	default:
		return reply{}, false, fmt.Errorf("lookup %s: HTTP %d: %s", key, resp.StatusCode, errorText(body))
	}
}

// transportReply classifies a call that got no HTTP reply. Only a failed
// dial proves the request never left; anything later may have executed it,
// a call the dispatcher cancelled itself included.
func transportReply(ctx context.Context, err error) reply {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		if cancelled(ctx) {
			return reply{kind: kindRefused, label: "cancelled", detail: "call cancelled by the dispatcher before it connected"}
		}
		return reply{kind: kindRefused, label: "unreachable", detail: fmt.Sprintf("processor unreachable: %v", op.Err)}
	}
	if cancelled(ctx) {
		return reply{kind: kindAmbiguous, label: "cancelled", detail: "call cancelled by the dispatcher (partition revoked, or shutdown) after it may have reached the processor"}
	}
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
		return reply{kind: kindAmbiguous, label: "timeout", detail: "processor did not answer in time"}
	}
	return reply{kind: kindAmbiguous, label: "transport_error", detail: fmt.Sprintf("no reply: %v", err)}
}

// cancelled reports whether the caller cancelled ctx, the context of one
// call (its per-call timeout is a deadline, not a cancellation): the
// dispatcher gave the call up, when its partition was revoked or the
// shutdown grace ended.
func cancelled(ctx context.Context) bool { return errors.Is(ctx.Err(), context.Canceled) }

// parseRetryAfter reads delay-seconds or an HTTP date; 0 when absent or bad,
// which falls back to the exponential backoff.
func parseRetryAfter(v string) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil {
		switch {
		case s < 0:
			return 0
		case s > int(math.MaxInt64/time.Second):
			// Past ~292 years the product wraps negative (found by
			// FuzzParseRetryAfter); the caller caps it at MaxRetryAfter.
			return math.MaxInt64
		}
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}

// errorText extracts {"error": "..."} or falls back to the trimmed body.
func errorText(body []byte) string {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		return e.Error
	}
	s := strings.TrimSpace(string(body))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	if s == "" {
		return "empty body"
	}
	return s
}

func postJSON(ctx context.Context, url string, v any) (*http.Request, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	return req, nil
}

// unparsable is the reply to a body that cannot be read as an answer: the
// call may have executed, so it is never taken as success or failure.
func unparsable(format string, args ...any) reply {
	return reply{kind: kindAmbiguous, label: "unparsable", detail: "unparsable processor reply: " + fmt.Sprintf(format, args...)}
}

// paymentBody is the answer both dialects share: id, status and reason.
type paymentBody struct {
	ID             string `json:"id"`
	IdempotencyKey string `json:"idempotency_key"`
	Status         string `json:"status"`
	Reason         string `json:"reason"`
}

func readPayment(body []byte, wantKey string) reply {
	// Unmarshal reads the whole body: a valid answer followed by anything
	// (a corrupted or concatenated body) is not an answer to trust.
	var b paymentBody
	if err := json.Unmarshal(body, &b); err != nil {
		return unparsable("%v", err)
	}
	if wantKey != "" && b.IdempotencyKey != "" && b.IdempotencyKey != wantKey {
		return unparsable("reply is for idempotency key %q, want %q", b.IdempotencyKey, wantKey)
	}
	switch b.Status {
	case "succeeded":
		if b.ID == "" {
			return unparsable("succeeded without an id")
		}
		return reply{kind: kindSucceeded, label: "succeeded", ref: b.ID}
	case "declined":
		reason := b.Reason
		if reason == "" {
			reason = "declined by processor"
		}
		return reply{kind: kindDeclined, label: "declined", ref: b.ID, detail: reason}
	default:
		return unparsable("status %q", b.Status)
	}
}

// proposed is POST /v2/payments with an Idempotency-Key.
type proposed struct{ base string }

func (d proposed) request(ctx context.Context, p Payment) (*http.Request, error) {
	req, err := postJSON(ctx, d.base+"/v2/payments", struct {
		UserID    int64  `json:"user_id"`
		Amount    int64  `json:"amount"`
		Reference string `json:"reference"`
	}{p.UserID, p.Amount, strconv.FormatInt(p.ID, 10)})
	if err != nil {
		return nil, err
	}
	req.Header.Set("Idempotency-Key", p.IdempotencyKey())
	return req, nil
}

func (proposed) read(p Payment, body []byte) reply { return readPayment(body, p.IdempotencyKey()) }

// serverError: with a key every 5xx is retried as a replay, so no 5xx needs
// to be trusted as "not executed".
func (proposed) serverError(code int, body []byte) reply {
	return reply{kind: kindAmbiguous, label: "server_error", detail: fmt.Sprintf("HTTP %d: %s", code, errorText(body))}
}

func (proposed) retriesAmbiguous() bool { return true }

func (d proposed) lookupURL(p Payment) string {
	return d.base + "/v2/payments/" + url.PathEscape(p.IdempotencyKey())
}

// asIs is POST /payment without a key.
type asIs struct{ base string }

func (d asIs) request(ctx context.Context, p Payment) (*http.Request, error) {
	return postJSON(ctx, d.base+"/payment", struct {
		UserID int64 `json:"user_id"`
		Amount int64 `json:"amount"`
	}{p.UserID, p.Amount})
}

func (asIs) read(_ Payment, body []byte) reply { return readPayment(body, "") }

// serverError: the as-is API documents one refusal, 503 {"error":"over
// capacity"} (its 429): not executed. Every other 5xx, any other 503
// included, may have executed: a proxy or load balancer in front of the
// processor answers 503 of its own, also after it forwarded the request.
func (asIs) serverError(code int, body []byte) reply {
	if code == http.StatusServiceUnavailable && overCapacity(body) {
		return reply{kind: kindRefused, label: "over_capacity", detail: "processor over capacity (HTTP 503)"}
	}
	label := "server_error"
	if code == http.StatusServiceUnavailable {
		label = "unavailable"
	}
	return reply{kind: kindAmbiguous, label: label, detail: fmt.Sprintf("HTTP %d: %s", code, errorText(body))}
}

// overCapacity reports whether body is the as-is API's documented
// over-capacity answer, {"error":"over capacity"}, and nothing else passing
// for it (a plain-text "over capacity" from a proxy is not that answer).
func overCapacity(body []byte) bool {
	var e struct {
		Error string `json:"error"`
	}
	return json.Unmarshal(body, &e) == nil && e.Error == "over capacity"
}

func (asIs) retriesAmbiguous() bool { return false }

func (asIs) lookupURL(Payment) string { return "" }
