package processor

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/time/rate"

	"github.com/finsvc/finance/pkg/payment"
)

// step answers one call of the fake processor.
type step func(w http.ResponseWriter, r *http.Request)

func reply200(body string) step {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, body)
	}
}

func replyStatus(code int, body string, header ...string) step {
	return func(w http.ResponseWriter, _ *http.Request) {
		for i := 0; i+1 < len(header); i += 2 {
			w.Header().Set(header[i], header[i+1])
		}
		w.WriteHeader(code)
		_, _ = io.WriteString(w, body)
	}
}

// hang never answers; the client's per-call timeout ends the call.
func hang(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }

// call is what the fake processor saw.
type call struct {
	Path string
	Key  string
	Body map[string]any
}

// fakeProcessor answers calls with steps in order, repeating the last one.
type fakeProcessor struct {
	mu    sync.Mutex
	steps []step
	calls []call
	// batchSizes has one entry a batch call: its number of payments.
	batchSizes []int
	// noBatch makes the batch route answer 404, as a processor without it.
	noBatch bool
}

func newFakeProcessor(t *testing.T, steps ...step) (*fakeProcessor, *httptest.Server) {
	t.Helper()
	f := &fakeProcessor{steps: steps}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == batchPath {
			f.serveBatch(w, r)
			return
		}
		var body map[string]any
		_ = json.NewDecoder(r.Body).Decode(&body)
		f.next(call{Path: r.URL.Path, Key: r.Header.Get("Idempotency-Key"), Body: body})(w, r)
	}))
	t.Cleanup(srv.Close)
	return f, srv
}

// next records c and returns the step that answers it.
func (f *fakeProcessor) next(c call) step {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := len(f.calls)
	f.calls = append(f.calls, c)
	return f.steps[min(n, len(f.steps)-1)]
}

// serveBatch answers POST /v2/payment-batches: each payment is recorded as
// the single call POST /v2/payments it stands for and answered by the next
// step, as it would have been alone; the batch's reply carries each step's
// status, body (a body that is not JSON as a JSON string) and Retry-After.
// A step that hangs holds the whole batch.
func (f *fakeProcessor) serveBatch(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Payments []struct {
			IdempotencyKey string `json:"idempotency_key"`
			UserID         int64  `json:"user_id"`
			Amount         int64  `json:"amount"`
			Reference      string `json:"reference"`
		} `json:"payments"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		replyStatus(400, `{"error":"bad batch"}`)(w, r)
		return
	}
	f.mu.Lock()
	f.batchSizes = append(f.batchSizes, len(req.Payments))
	f.mu.Unlock()
	if f.noBatch {
		replyStatus(404, `{"error":"not found"}`)(w, r)
		return
	}
	var results []map[string]any
	for _, p := range req.Payments {
		s := f.next(call{Path: "/v2/payments", Key: p.IdempotencyKey, Body: map[string]any{
			"user_id": float64(p.UserID), "amount": float64(p.Amount), "reference": p.Reference}})
		rec := httptest.NewRecorder()
		s(rec, r)
		body := json.RawMessage(rec.Body.Bytes())
		if !json.Valid(body) {
			body, _ = json.Marshal(rec.Body.String())
		}
		res := map[string]any{"status": rec.Code, "body": body}
		if ra := rec.Header().Get("Retry-After"); ra != "" {
			n, _ := strconv.Atoi(ra)
			res["retry_after"] = n
		}
		results = append(results, res)
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"results": results})
}

// seenBatches returns the size of each batch call made.
func (f *fakeProcessor) seenBatches() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]int(nil), f.batchSizes...)
}

func (f *fakeProcessor) seen() []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]call(nil), f.calls...)
}

// bundle is what a client test needs besides the client: the fake
// processor it calls and the client's metrics.
type bundle struct {
	fake    *fakeProcessor
	metrics *Metrics
}

// setup returns a client of api that calls a fake processor answering with
// steps, its metrics on a registry of their own. tune, when not nil,
// changes the config first (the test's own limiter, breaker or timeout).
func setup(t *testing.T, api API, tune func(*Config), steps ...step) (Client, *bundle) {
	t.Helper()
	f, srv := newFakeProcessor(t, steps...)
	b := &bundle{fake: f, metrics: NewMetrics(prometheus.NewRegistry())}
	cfg := Config{
		BaseURL: srv.URL,
		API:     api,
		// Generous: a call that should answer must not time out on a loaded machine.
		Timeout:        time.Second,
		MaxAttempts:    3,
		Limiter:        rate.NewLimiter(rate.Inf, 1),
		BackoffInitial: time.Millisecond,
		BackoffMax:     5 * time.Millisecond,
		Metrics:        b.metrics,
	}
	if tune != nil {
		tune(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c, b
}

// checkExecute executes testPayment with c and fails unless the result is
// want, its reason containing wantReason (want.Reason is not compared).
func checkExecute(t *testing.T, c Client, want Result, wantReason string) {
	t.Helper()
	got, err := c.Execute(t.Context(), testPayment)
	if err != nil {
		t.Fatalf("Execute: %v", err)
	}
	if !strings.Contains(got.Reason, wantReason) {
		t.Errorf("Reason = %q, want it to contain %q", got.Reason, wantReason)
	}
	got.Reason = ""
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Result (-want +got):\n%s", diff)
	}
}

const (
	succeeded = `{"id":"ref-1","idempotency_key":"payment-0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b","user_id":7,"amount":-500,"status":"succeeded","created_at":"2026-01-01T00:00:00Z"}`
	declined  = `{"id":"ref-2","idempotency_key":"payment-0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b","user_id":7,"amount":-500,"status":"declined","reason":"insufficient funds at issuer"}`
)

var (
	refused429 = replyStatus(429, `{"error":"rate limited"}`)
	lookupCall = call{Path: "/v2/payments/payment-0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"}
)

var testPayment = Payment{ID: 42, UID: uuid.MustParse("0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"), UserID: 7, Amount: -500}

func TestExecute(t *testing.T) {
	t.Parallel()
	proposedCall := call{Path: "/v2/payments", Key: "payment-0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", Body: map[string]any{"user_id": 7.0, "amount": -500.0, "reference": "42"}}
	asIsCall := call{Path: "/payment", Body: map[string]any{"user_id": 7.0, "amount": -500.0}}
	// The rows are alike on purpose: each case reads whole, on its own.
	tests := []struct {
		name        string
		api         API
		steps       []step
		want        Result
		wantReason  string // substring of Reason
		wantCalls   []call
		want429s    float64
		wantResults map[string]float64 // calls by result label
	}{
		{
			name:        "proposed success",
			api:         APIProposed,
			steps:       []step{reply200(succeeded)},
			want:        Result{Status: payment.StatusSucceeded, Ref: "ref-1", Attempts: 1},
			wantCalls:   []call{proposedCall},
			wantResults: map[string]float64{"succeeded": 1},
		},
		{
			name:        "proposed decline",
			api:         APIProposed,
			steps:       []step{reply200(declined)},
			want:        Result{Status: payment.StatusFailed, Attempts: 1},
			wantReason:  "insufficient funds at issuer",
			wantCalls:   []call{proposedCall},
			wantResults: map[string]float64{"declined": 1},
		},
		{
			name:        "429 with Retry-After then success",
			api:         APIProposed,
			steps:       []step{replyStatus(429, `{"error":"rate limited"}`, "Retry-After", "1"), reply200(succeeded)},
			want:        Result{Status: payment.StatusSucceeded, Ref: "ref-1", Attempts: 2},
			wantCalls:   []call{proposedCall, proposedCall},
			want429s:    1,
			wantResults: map[string]float64{"rate_limited": 1, "succeeded": 1},
		},
		{
			name:        "5xx then success with the same key",
			api:         APIProposed,
			steps:       []step{replyStatus(500, `{"error":"boom"}`), reply200(succeeded)},
			want:        Result{Status: payment.StatusSucceeded, Ref: "ref-1", Attempts: 2},
			wantCalls:   []call{proposedCall, proposedCall},
			wantResults: map[string]float64{"server_error": 1, "succeeded": 1},
		},
		{
			name:        "timeouts retried with the same key then unknown",
			api:         APIProposed,
			steps:       []step{hang},
			want:        Result{Status: payment.StatusUnknown, Attempts: 3, Cause: CauseBudgetSpent},
			wantReason:  "no definite answer after 3 calls",
			wantCalls:   []call{proposedCall, proposedCall, proposedCall},
			wantResults: map[string]float64{"timeout": 3},
		},
		{
			name:        "unparsable body is ambiguous, never success or failure",
			api:         APIProposed,
			steps:       []step{reply200(`{"id":"ref-1","status":`), reply200(`{"status":"maybe"}`), reply200(`<html>`)},
			want:        Result{Status: payment.StatusUnknown, Attempts: 3, Cause: CauseBudgetSpent},
			wantReason:  "unparsable processor reply",
			wantCalls:   []call{proposedCall, proposedCall, proposedCall},
			wantResults: map[string]float64{"unparsable": 3},
		},
		{
			name:        "unparsable then success",
			api:         APIProposed,
			steps:       []step{reply200(`not json`), reply200(succeeded)},
			want:        Result{Status: payment.StatusSucceeded, Ref: "ref-1", Attempts: 2},
			wantCalls:   []call{proposedCall, proposedCall},
			wantResults: map[string]float64{"unparsable": 1, "succeeded": 1},
		},
		{
			name:        "reply for another key is ambiguous",
			api:         APIProposed,
			steps:       []step{reply200(strings.Replace(succeeded, "payment-0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "payment-0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c", 1)), reply200(succeeded)},
			want:        Result{Status: payment.StatusSucceeded, Ref: "ref-1", Attempts: 2},
			wantCalls:   []call{proposedCall, proposedCall},
			wantResults: map[string]float64{"unparsable": 1, "succeeded": 1},
		},
		{
			name:        "400 is a failure",
			api:         APIProposed,
			steps:       []step{replyStatus(400, `{"error":"amount must not be 0"}`)},
			want:        Result{Status: payment.StatusFailed, Attempts: 1},
			wantReason:  "rejected by processor: HTTP 400: amount must not be 0",
			wantCalls:   []call{proposedCall},
			wantResults: map[string]float64{"rejected": 1},
		},
		{
			name:        "rejection after an ambiguous call is unknown",
			api:         APIProposed,
			steps:       []step{replyStatus(502, `bad gateway`), replyStatus(400, `{"error":"nope"}`)},
			want:        Result{Status: payment.StatusUnknown, Attempts: 2, Cause: CauseRejectedAfterAmbiguous},
			wantReason:  "an earlier call was ambiguous",
			wantCalls:   []call{proposedCall, proposedCall},
			wantResults: map[string]float64{"server_error": 1, "rejected": 1},
		},
		{
			name:        "idempotency key reuse is unknown at once",
			api:         APIProposed,
			steps:       []step{replyStatus(422, `{"error":"idempotency_key_reuse"}`)},
			want:        Result{Status: payment.StatusUnknown, Attempts: 1, Cause: CauseKeyRefused},
			wantReason:  "idempotency_key_reuse",
			wantCalls:   []call{proposedCall},
			wantResults: map[string]float64{"conflict": 1},
		},
		{
			name:        "429 until the budget ends, then lookup not found, is not executed",
			api:         APIProposed,
			steps:       []step{refused429, refused429, refused429, replyStatus(404, `{"error":"not_found"}`)},
			want:        Result{Status: payment.StatusFailed, Attempts: 3},
			wantReason:  "not executed: processor rate limit (429) after 3 calls; lookup by key: not found",
			wantCalls:   []call{proposedCall, proposedCall, proposedCall, lookupCall},
			want429s:    3,
			wantResults: map[string]float64{"rate_limited": 3},
		},
		{
			name:        "as-is success",
			api:         APIAsIs,
			steps:       []step{reply200(`{"id":"ref-9","status":"succeeded"}`)},
			want:        Result{Status: payment.StatusSucceeded, Ref: "ref-9", Attempts: 1},
			wantCalls:   []call{asIsCall},
			wantResults: map[string]float64{"succeeded": 1},
		},
		{
			name:        "as-is timeout is unknown after exactly one call",
			api:         APIAsIs,
			steps:       []step{hang, reply200(`{"id":"ref-9","status":"succeeded"}`)},
			want:        Result{Status: payment.StatusUnknown, Attempts: 1, Cause: CauseNotRetried},
			wantReason:  "not retried",
			wantCalls:   []call{asIsCall},
			wantResults: map[string]float64{"timeout": 1},
		},
		{
			name:        "as-is 500 is unknown after exactly one call",
			api:         APIAsIs,
			steps:       []step{replyStatus(500, `{"error":"boom"}`), reply200(`{"id":"ref-9","status":"succeeded"}`)},
			want:        Result{Status: payment.StatusUnknown, Attempts: 1, Cause: CauseNotRetried},
			wantReason:  "HTTP 500",
			wantCalls:   []call{asIsCall},
			wantResults: map[string]float64{"server_error": 1},
		},
		{
			name:        "as-is unparsable is unknown after exactly one call",
			api:         APIAsIs,
			steps:       []step{reply200(`{"id":"ref-9"`), reply200(`{"id":"ref-9","status":"succeeded"}`)},
			want:        Result{Status: payment.StatusUnknown, Attempts: 1, Cause: CauseNotRetried},
			wantReason:  "unparsable",
			wantCalls:   []call{asIsCall},
			wantResults: map[string]float64{"unparsable": 1},
		},
		{
			name:        "as-is 503 over capacity is retried",
			api:         APIAsIs,
			steps:       []step{replyStatus(503, `{"error":"over capacity"}`), reply200(`{"id":"ref-9","status":"succeeded"}`)},
			want:        Result{Status: payment.StatusSucceeded, Ref: "ref-9", Attempts: 2},
			wantCalls:   []call{asIsCall, asIsCall},
			wantResults: map[string]float64{"over_capacity": 1, "succeeded": 1},
		},
		{
			// Only the documented answer is a refusal: a proxy's 503 may
			// come after it forwarded the request, and the processor's own
			// outage answer is not documented for the as-is API either.
			name:        "as-is 503 with another body is unknown after exactly one call",
			api:         APIAsIs,
			steps:       []step{replyStatus(503, `<html><body>503 Service Unavailable</body></html>`), reply200(`{"id":"ref-9","status":"succeeded"}`)},
			want:        Result{Status: payment.StatusUnknown, Attempts: 1, Cause: CauseNotRetried},
			wantReason:  "HTTP 503: <html>",
			wantCalls:   []call{asIsCall},
			wantResults: map[string]float64{"unavailable": 1},
		},
		{
			name:        "as-is 503 outage is unknown after exactly one call",
			api:         APIAsIs,
			steps:       []step{replyStatus(503, `{"error":"outage"}`, "Retry-After", "1"), reply200(`{"id":"ref-9","status":"succeeded"}`)},
			want:        Result{Status: payment.StatusUnknown, Attempts: 1, Cause: CauseNotRetried},
			wantReason:  "HTTP 503: outage",
			wantCalls:   []call{asIsCall},
			wantResults: map[string]float64{"unavailable": 1},
		},
		{
			name:        "as-is 503 with over capacity as plain text is unknown",
			api:         APIAsIs,
			steps:       []step{replyStatus(503, "over capacity\n"), reply200(`{"id":"ref-9","status":"succeeded"}`)},
			want:        Result{Status: payment.StatusUnknown, Attempts: 1, Cause: CauseNotRetried},
			wantReason:  "HTTP 503: over capacity",
			wantCalls:   []call{asIsCall},
			wantResults: map[string]float64{"unavailable": 1},
		},
		{
			name:        "as-is 503 until the budget ends is not executed",
			api:         APIAsIs,
			steps:       []step{replyStatus(503, `{"error":"over capacity"}`)},
			want:        Result{Status: payment.StatusFailed, Attempts: 3},
			wantReason:  "not executed",
			wantCalls:   []call{asIsCall, asIsCall, asIsCall},
			wantResults: map[string]float64{"over_capacity": 3},
		},
	}
	// Every case of the proposed API runs twice: alone, and sent in a batch
	// call (each payment of a batch answered, classified and retried
	// exactly as a call of its own).
	for _, tt := range tests {
		for _, batched := range []bool{false, true} {
			if batched && tt.api != APIProposed {
				continue
			}
			name := tt.name
			tune := func(*Config) {}
			if batched {
				name += " (batch call)"
				tune = func(cfg *Config) { cfg.BatchMax = 8 }
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				c, b := setup(t, tt.api, tune, tt.steps...)
				f, m := b.fake, b.metrics
				if batched && len(f.steps) > 0 {
					defer func() {
						if sizes := f.seenBatches(); len(sizes) == 0 {
							t.Errorf("no batch call made")
						}
					}()
				}

				checkExecute(t, c, tt.want, tt.wantReason)
				if diff := cmp.Diff(tt.wantCalls, f.seen()); diff != "" {
					t.Errorf("processor calls (-want +got):\n%s", diff)
				}
				if got := testutil.ToFloat64(m.rateLimited); got != tt.want429s {
					t.Errorf("429s counted = %v, want %v", got, tt.want429s)
				}
				gotResults := map[string]float64{}
				for _, label := range []string{"succeeded", "declined", "rejected", "conflict", "rate_limited", "over_capacity", "unavailable", "unreachable", "timeout", "transport_error", "lost_reply", "server_error", "unparsable"} {
					if v := testutil.ToFloat64(m.calls.WithLabelValues(label)); v != 0 {
						gotResults[label] = v
					}
				}
				if diff := cmp.Diff(tt.wantResults, gotResults); diff != "" {
					t.Errorf("calls by result (-want +got):\n%s", diff)
				}
				if got := testutil.ToFloat64(m.inFlight); got != 0 {
					t.Errorf("in-flight gauge = %v after Execute, want 0", got)
				}
			})
		}
	}
}

func TestExecuteUnreachableIsNotExecuted(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens: every dial is refused

	for _, api := range []API{APIProposed, APIAsIs} {
		t.Run(string(api), func(t *testing.T) {
			t.Parallel()
			c, _ := setup(t, api, func(cfg *Config) { cfg.BaseURL = "http://" + addr })
			got, err := c.Execute(t.Context(), testPayment)
			if err != nil {
				t.Fatalf("Execute: %v", err)
			}
			switch api {
			case APIAsIs:
				// The claim makes this dispatcher the only sender: none of
				// its calls connected, so nothing executed the payment.
				if got.Status != payment.StatusFailed || got.Attempts != 3 || !strings.Contains(got.Reason, "not executed: processor unreachable") {
					t.Errorf("Result = %+v, want failed after 3 unreachable calls", got)
				}
			case APIProposed:
				// An earlier call under the key may have executed it, and
				// the lookup cannot reach the processor either.
				if got.Status != payment.StatusUnknown || got.Cause != CauseLookupFailed || got.Attempts != 3 {
					t.Errorf("Result = %+v, want unknown (lookup failed) after 3 unreachable calls", got)
				}
			}
		})
	}
}

// When every call was refused (not executed), an earlier call under the
// same key (an earlier owner's, timed out but executed) may still have
// executed the payment: on the proposed API the processor's lookup decides
// before the payment is failed "not executed".
func TestExecuteLooksUpBeforeNotExecuted(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		lookup      step
		want        Result
		wantReason  string
		wantLookups map[string]float64
	}{
		{
			name:        "not found: not executed",
			lookup:      replyStatus(404, `{"error":"not_found"}`),
			want:        Result{Status: payment.StatusFailed, Attempts: 3},
			wantReason:  "not executed: processor rate limit (429) after 3 calls; lookup by key: not found",
			wantLookups: map[string]float64{"not_found": 1},
		},
		{
			name:        "executed by an earlier call: succeeded",
			lookup:      reply200(succeeded),
			want:        Result{Status: payment.StatusSucceeded, Ref: "ref-1", Attempts: 3},
			wantLookups: map[string]float64{"succeeded": 1},
		},
		{
			name:        "declined for an earlier call: failed with its reason",
			lookup:      reply200(declined),
			want:        Result{Status: payment.StatusFailed, Attempts: 3},
			wantReason:  "insufficient funds at issuer",
			wantLookups: map[string]float64{"declined": 1},
		},
		{
			name:        "lookup answers 503: unknown",
			lookup:      replyStatus(503, `{"error":"outage"}`),
			want:        Result{Status: payment.StatusUnknown, Attempts: 3, Cause: CauseLookupFailed},
			wantReason:  "the lookup failed: lookup payment-0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b: HTTP 503: outage",
			wantLookups: map[string]float64{"error": 1},
		},
		{
			name:        "bare 404 (no lookup route) proves nothing: unknown",
			lookup:      replyStatus(404, "404 page not found\n"),
			want:        Result{Status: payment.StatusUnknown, Attempts: 3, Cause: CauseLookupFailed},
			wantReason:  "no lookup route",
			wantLookups: map[string]float64{"error": 1},
		},
		{
			name:        "unparsable lookup: unknown",
			lookup:      reply200(`{"status":"pending"}`),
			want:        Result{Status: payment.StatusUnknown, Attempts: 3, Cause: CauseLookupFailed},
			wantReason:  "unparsable",
			wantLookups: map[string]float64{"error": 1},
		},
		{
			name:        "executed for another user and amount: unknown",
			lookup:      reply200(strings.Replace(succeeded, `"user_id":7`, `"user_id":8`, 1)),
			want:        Result{Status: payment.StatusUnknown, Attempts: 3, Cause: CauseLookupFailed},
			wantReason:  "not user 7 amount -500",
			wantLookups: map[string]float64{"error": 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, b := setup(t, APIProposed, nil, refused429, refused429, refused429, tt.lookup)
			f, m := b.fake, b.metrics
			checkExecute(t, c, tt.want, tt.wantReason)
			proposedCall := call{Path: "/v2/payments", Key: "payment-0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", Body: map[string]any{"user_id": 7.0, "amount": -500.0, "reference": "42"}}
			if diff := cmp.Diff([]call{proposedCall, proposedCall, proposedCall, lookupCall}, f.seen()); diff != "" {
				t.Errorf("processor calls (-want +got):\n%s", diff)
			}
			gotLookups := map[string]float64{}
			for _, label := range []string{"succeeded", "declined", "not_found", "error"} {
				if v := testutil.ToFloat64(m.lookups.WithLabelValues(label)); v != 0 {
					gotLookups[label] = v
				}
			}
			if diff := cmp.Diff(tt.wantLookups, gotLookups); diff != "" {
				t.Errorf("lookups by result (-want +got):\n%s", diff)
			}
		})
	}

	// The as-is API has no lookup: its claim made this dispatcher the only
	// sender, so refusals alone prove the payment was not executed.
	c, b := setup(t, APIAsIs, nil, replyStatus(503, `{"error":"over capacity"}`))
	got, err := c.Execute(t.Context(), testPayment)
	if err != nil || got.Status != payment.StatusFailed || !strings.HasPrefix(got.Reason, "not executed") {
		t.Errorf("as-is: Execute = %+v, %v; want failed as not executed", got, err)
	}
	if n := len(b.fake.seen()); n != 3 {
		t.Errorf("as-is: processor saw %d requests, want the 3 calls and no lookup", n)
	}
}

func TestExecuteContextEndsBeforeAnyCall(t *testing.T) {
	t.Parallel()
	lim := rate.NewLimiter(rate.Every(time.Hour), 1)
	lim.Allow() // the only token is gone; the next one is an hour away
	c, b := setup(t, APIProposed, func(cfg *Config) { cfg.Limiter = lim }, reply200(succeeded))
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()

	_, err := c.Execute(ctx, testPayment)
	if !errors.Is(err, ErrNotSent) {
		t.Fatalf("err = %v, want ErrNotSent", err)
	}
	if n := len(b.fake.seen()); n != 0 {
		t.Errorf("processor saw %d calls, want 0", n)
	}
}

func TestExecuteInterruptedAfterAmbiguousCallIsUnknown(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	c, b := setup(t, APIProposed, nil, func(w http.ResponseWriter, r *http.Request) {
		cancel() // the dispatcher shuts down while the call is in flight
		hang(w, r)
	})

	got, err := c.Execute(ctx, testPayment)
	if err != nil {
		t.Fatalf("Execute: %v", err)
	}
	if got.Status != payment.StatusUnknown || got.Attempts != 1 {
		t.Errorf("Result = %+v, want unknown after 1 call", got)
	}
	if n := len(b.fake.seen()); n != 1 {
		t.Errorf("processor saw %d calls, want 1", n)
	}
}

// A call the dispatcher cancels while it is in flight (its partition was
// revoked) may have reached the processor: it is ambiguous, never "not
// executed", and it is the dispatcher's doing, not an outage, so it neither
// counts towards opening the breaker nor closes a half-open one.
func TestExecuteCancelledCallIsMaybeSentAndNoOutage(t *testing.T) {
	t.Parallel()
	for _, api := range []API{APIProposed, APIAsIs} {
		t.Run(string(api), func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithCancel(t.Context())
			// One failure, however short its span, would open this breaker.
			br := NewBreaker(BreakerConfig{Failures: 1, MinSpan: time.Nanosecond, OpenFor: time.Hour})
			c, b := setup(t, api, func(cfg *Config) { cfg.Timeout, cfg.Breaker = time.Minute, br },
				func(w http.ResponseWriter, r *http.Request) {
					cancel() // the partition is revoked while the call is in flight
					hang(w, r)
				})
			f, m := b.fake, b.metrics
			got, err := c.Execute(ctx, testPayment)
			if err != nil {
				t.Fatalf("Execute: %v (a cancelled call may have been sent: never ErrNotSent)", err)
			}
			if got.Status != payment.StatusUnknown || got.Cause != CauseInterrupted || got.Attempts != 1 {
				t.Errorf("Result = %+v, want unknown (interrupted) after 1 call", got)
			}
			if n := len(f.seen()); n != 1 {
				t.Errorf("processor saw %d calls, want 1", n)
			}
			if v := testutil.ToFloat64(m.calls.WithLabelValues("cancelled")); v != 1 {
				t.Errorf("calls counted as cancelled = %v, want 1", v)
			}
			if br.down() {
				t.Errorf("breaker down after a cancelled call (state %v, counts %+v), want closed and no failure counted", br.cb.State(), br.cb.Counts())
			}
		})
	}
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	_, err := New(Config{BaseURL: "localhost:8090", API: "v3", Timeout: 0, MaxAttempts: 0})
	if err == nil {
		t.Fatal("New accepted an invalid config")
	}
	for _, want := range []string{"processor url", "processor api", "timeout", "max attempts", "limiter"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"1", time.Second},
		{" 3 ", 3 * time.Second},
		{"-1", 0},
		{"soon", 0},
		{"Mon, 01 Jan 2001 00:00:00 GMT", 0}, // in the past
	}
	for _, tt := range tests {
		if got := parseRetryAfter(tt.in); got != tt.want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}
