package processor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/finsvc/finance/pkg/coalesce"
)

// batchPath is the proposed API's batch route: up to maxBatchSize payments in
// one call, each answered as POST /v2/payments would answer it alone
// (docs/processor-openapi.yaml).
const batchPath = "/v2/payment-batches"

// maxBatchSize is the most payments the processor takes in one batch call.
const maxBatchSize = 100

// batcher sends the calls that wait together in one batch call. Under load
// most of a call's cost, on both sides, is the HTTP exchange, not the
// payment: a call that finds fewer than Config.BatchInFlight batches running
// is sent at once with every call waiting at that moment, otherwise it
// waits for the next batch (pkg/coalesce). Alone, a call goes in a batch of
// one, at once.
//
// Every call in a batch has already been paced and let through by the
// breaker (Execute), so the processor's limit counts its payments as before;
// each payment's answer is classified exactly as a single call's (classify),
// and what happens to the whole call (no reply, a timeout, a 5xx) happens to
// each payment in it.
type batcher struct {
	c      *client
	url    string // the batch route
	co     *coalesce.Coalescer[batchCall, reply]
	tracer trace.Tracer
	// off is set when the processor has no batch route (404 or 405): every
	// later call is a single one.
	off atomic.Bool
}

func newBatcher(c *client, url string) *batcher {
	// The tracer is taken once, from the global provider (see New).
	b := &batcher{c: c, url: url, tracer: otel.GetTracerProvider().Tracer("github.com/finsvc/finance/services/dispatcher/internal/processor")}
	b.co = coalesce.New(c.cfg.BatchInFlight, min(c.cfg.BatchMax, maxBatchSize), c.cfg.Timeout, b.callBatch)
	return b
}

// batchCall is one payment waiting for a batch, with the span of its call.
type batchCall struct {
	p    Payment
	span trace.SpanContext
}

// call makes p's call in a batch and classifies p's answer; ctx is the
// payment's own context. Each payment's call is a client span of its own
// trace, child of its dispatch span, from joining a batch to its answer;
// the batch's HTTP request continues the trace of its first payment (one
// request carries one traceparent).
func (b *batcher) call(ctx context.Context, p Payment) reply {
	ctx, span := b.tracer.Start(ctx, "POST "+batchPath, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.Int64("payment.id", p.ID)))
	defer span.End()
	r, err := b.co.Do(ctx, batchCall{p: p, span: span.SpanContext()})
	switch {
	case errors.Is(err, coalesce.ErrWithdrawn):
		// Left before its batch was sent: it never reached the processor.
		r = reply{kind: kindRefused, label: "cancelled", detail: "call cancelled by the dispatcher before it was sent"}
	case err != nil:
		// Left while its batch was in flight: the processor may execute it.
		r = reply{kind: kindAmbiguous, label: "cancelled", detail: "call cancelled by the dispatcher (partition revoked, or shutdown) after it may have reached the processor"}
	}
	span.SetAttributes(attribute.String("processor.result", r.label))
	if r.kind == kindAmbiguous {
		span.SetStatus(codes.Error, r.detail)
	}
	return r
}

// batchItem is one payment of a batch call.
type batchItem struct {
	IdempotencyKey string `json:"idempotency_key"`
	UserID         int64  `json:"user_id"`
	Amount         int64  `json:"amount"`
	Reference      string `json:"reference"`
}

// batchResult is the processor's answer for one payment of a batch: the
// status and body a single call would have got, its Idempotent-Replayed and
// Retry-After (seconds).
type batchResult struct {
	Status     int             `json:"status"`
	Body       json.RawMessage `json:"body"`
	RetryAfter *int            `json:"retry_after"`
}

// callBatch makes one batch call for calls within ctx (the batch's own
// timeout) and returns each payment's classified answer; it is the
// coalescer's query.
func (b *batcher) callBatch(ctx context.Context, calls []batchCall) ([]reply, []error) {
	replies := make([]reply, len(calls))
	// A key twice in one batch is refused whole by the processor; the
	// dispatcher never has one payment in two calls at once, but if it did,
	// the later one is not sent (a refusal, retried after its backoff).
	var sent []Payment
	var at []int // sent[n] is calls[at[n]]
	seen := make(map[string]bool, len(calls))
	for i, c := range calls {
		key := c.p.IdempotencyKey()
		if seen[key] {
			replies[i] = reply{kind: kindRefused, label: "cancelled", detail: "not sent: the same payment is in this batch already"}
			continue
		}
		seen[key] = true
		sent = append(sent, c.p)
		at = append(at, i)
	}
	m := b.c.cfg.Metrics
	m.inFlight.Add(float64(len(sent)))
	m.batchSize.Observe(float64(len(sent)))
	start := time.Now()
	got := b.do(trace.ContextWithSpanContext(ctx, calls[0].span), sent)
	elapsed := time.Since(start).Seconds()
	m.inFlight.Sub(float64(len(sent)))
	for n, i := range at {
		replies[i] = got[n]
		m.observe(got[n], elapsed)
	}
	return replies, make([]error, len(calls))
}

// do sends ps in one batch call and classifies each payment's answer.
func (b *batcher) do(ctx context.Context, ps []Payment) []reply {
	got := make([]reply, len(ps))
	all := func(r reply) []reply {
		for i := range got {
			got[i] = r
		}
		return got
	}
	items := make([]batchItem, len(ps))
	for i, p := range ps {
		items[i] = batchItem{IdempotencyKey: p.IdempotencyKey(), UserID: p.UserID, Amount: p.Amount, Reference: strconv.FormatInt(p.ID, 10)}
	}
	req, err := postJSON(ctx, b.url, struct {
		Payments []batchItem `json:"payments"`
	}{items})
	if err != nil {
		return all(reply{kind: kindRejected, label: "rejected", detail: fmt.Sprintf("build request: %v", err)})
	}
	resp, err := b.c.hc.Do(req)
	if err != nil {
		return all(transportReply(req.Context(), err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBatchBody))
	if err != nil {
		return all(reply{kind: kindAmbiguous, label: "lost_reply", detail: fmt.Sprintf("HTTP %d, reading the batch reply: %v", resp.StatusCode, err)})
	}
	if resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusMethodNotAllowed {
		// No batch route: nothing was executed. Later calls go one by one.
		if !b.off.Swap(true) {
			b.c.cfg.Logger.WarnContext(req.Context(), "processor has no batch route; calling it once per payment from now on",
				"status", resp.StatusCode, "detail", errorText(body))
		}
		return all(reply{kind: kindRefused, label: "batch_unsupported", detail: fmt.Sprintf("HTTP %d for %s: the processor takes no batches", resp.StatusCode, batchPath)})
	}
	if resp.StatusCode != http.StatusOK {
		// The whole call refused (429, 400), failed or unavailable: each
		// payment as a single call with that answer.
		for i, p := range ps {
			got[i] = b.c.classify(p, resp.StatusCode, resp.Header.Get("Retry-After"), body)
		}
		return got
	}
	var out struct {
		Results []batchResult `json:"results"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return all(unparsable("batch reply: %v", err))
	}
	if len(out.Results) != len(ps) {
		return all(unparsable("batch reply has %d results for %d payments", len(out.Results), len(ps)))
	}
	for i, res := range out.Results {
		retryAfter := ""
		if res.RetryAfter != nil {
			retryAfter = strconv.Itoa(*res.RetryAfter)
		}
		got[i] = b.c.classify(ps[i], res.Status, retryAfter, res.Body)
	}
	return got
}

// maxBatchBody bounds what is read of a batch reply: a single reply's
// bound for each payment.
const maxBatchBody = maxBatchSize * maxBody
