package processor

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
)

// The fuzz targets of the processor's answers, as-is and proposed: the
// processor is outside our control, so every status, header and body must
// be classified without a panic, and conservatively. The property: the
// label is one of the fixed metric labels; a call counts as executed only
// on a 2xx whose body says succeeded with an id (for the proposed API, for
// this payment's key); a "not executed" (refused, rejected, declined) comes
// only from the answers documented to mean it; a Retry-After is never
// negative; a lookup is found only as succeeded or declined.

type fakeTransport struct {
	code   int
	header http.Header
	body   []byte
}

func (f fakeTransport) RoundTrip(*http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: f.code, Header: f.header, Body: io.NopCloser(bytes.NewReader(f.body))}, nil
}

var fuzzPayment = Payment{ID: 7, UID: uuid.MustParse("0195f2d4-8c1e-7b4a-9c3e-1a2b3c4d5e6f"), UserID: 3456, Amount: -3000}

var replyLabels = map[string]bool{
	"succeeded": true, "declined": true, "rejected": true, "conflict": true, "rate_limited": true,
	"over_capacity": true, "server_error": true, "unavailable": true, "unparsable": true,
}

func addReplySeeds(f *testing.F) {
	key := fuzzPayment.IdempotencyKey()
	f.Add(200, "", []byte(`{"id":"p-1","idempotency_key":"`+key+`","status":"succeeded"}`))
	f.Add(201, "", []byte(`{"id":"p-1","status":"succeeded"}`))
	f.Add(200, "", []byte(`{"id":"p-2","idempotency_key":"other","status":"succeeded"}`))
	f.Add(200, "", []byte(`{"id":"","status":"succeeded"}`))
	f.Add(200, "", []byte(`{"status":"declined","reason":"insufficient funds"}`))
	f.Add(200, "", []byte(`{"status":"SUCCEEDED","id":"x"}`))
	f.Add(200, "", []byte(`{"status":"succeeded","id":"x","status":"declined"}`))
	f.Add(200, "", []byte(`not json`))
	f.Add(429, "2", []byte(`{"error":"rate limited"}`))
	f.Add(429, "9999999999", []byte{})
	f.Add(429, "Sun, 06 Nov 1994 08:49:37 GMT", []byte{})
	f.Add(422, "", []byte(`{"error":"key reused"}`))
	f.Add(503, "", []byte(`{"error":"over capacity"}`))
	f.Add(503, "", []byte(`over capacity`))
	f.Add(500, "", []byte(``))
	f.Add(404, "", []byte(`{"error":"not_found"}`))
	f.Add(302, "", []byte(``))
}

func fuzzReply(f *testing.F, d dialect, keyed bool) {
	addReplySeeds(f)
	f.Fuzz(func(t *testing.T, code int, retryAfter string, body []byte) {
		if code < 100 || code > 999 {
			return // not an HTTP status line
		}
		c := &client{hc: &http.Client{Transport: fakeTransport{code, http.Header{"Retry-After": {retryAfter}}, body}}, dialect: d}
		req, err := d.request(context.Background(), fuzzPayment)
		if err != nil {
			t.Fatal(err)
		}
		r := c.do(req, fuzzPayment)
		if !replyLabels[r.label] {
			t.Fatalf("label %q is not one of the metric labels", r.label)
		}
		if r.retryAfter < 0 {
			t.Fatalf("Retry-After %q read as %v", retryAfter, r.retryAfter)
		}
		var b paymentBody
		parsed := json.Unmarshal(body, &b) == nil
		switch r.kind {
		case kindSucceeded:
			if code < 200 || code > 299 || !parsed || b.Status != "succeeded" || b.ID == "" || r.ref != b.ID {
				t.Fatalf("HTTP %d %q taken as executed (ref %q)", code, body, r.ref)
			}
			if keyed && b.IdempotencyKey != "" && b.IdempotencyKey != fuzzPayment.IdempotencyKey() {
				t.Fatalf("a reply for key %q taken as this payment's", b.IdempotencyKey)
			}
		case kindDeclined:
			if code < 200 || code > 299 || !parsed || b.Status != "declined" {
				t.Fatalf("HTTP %d %q taken as declined", code, body)
			}
		case kindRefused:
			if code != http.StatusTooManyRequests && !(code == http.StatusServiceUnavailable && !keyed && overCapacity(body)) {
				t.Fatalf("HTTP %d %q taken as not executed (refused)", code, body)
			}
		case kindRejected, kindConflict:
			if code < 400 || code > 499 || code == http.StatusRequestTimeout || code == http.StatusTooManyRequests {
				t.Fatalf("HTTP %d taken as rejected", code)
			}
		case kindAmbiguous:
		default:
			t.Fatalf("kind %d", r.kind)
		}
	})
}

func FuzzReplyProposed(f *testing.F) { fuzzReply(f, proposed{base: "http://processor.test"}, true) }

func FuzzReplyAsIs(f *testing.F) { fuzzReply(f, asIs{base: "http://processor.test"}, false) }

func FuzzLookup(f *testing.F) {
	addReplySeeds(f)
	f.Add(200, "", []byte(`{"id":"p-1","status":"succeeded","user_id":1,"amount":-3000}`))
	f.Fuzz(func(t *testing.T, code int, _ string, body []byte) {
		if code < 100 || code > 999 {
			return
		}
		c := &client{cfg: Config{Timeout: time.Second, Metrics: NewMetrics(nil)},
			hc: &http.Client{Transport: fakeTransport{code, http.Header{}, body}}, dialect: proposed{base: "http://processor.test"}}
		r, found, err := c.lookup(context.Background(), fuzzPayment)
		if err != nil {
			if found {
				t.Fatal("found with an error")
			}
			return
		}
		if !found {
			if code != http.StatusNotFound {
				t.Fatalf("HTTP %d %q taken as never executed", code, body)
			}
			return
		}
		if code != http.StatusOK || (r.kind != kindSucceeded && r.kind != kindDeclined) {
			t.Fatalf("HTTP %d %q found as %+v", code, body, r)
		}
		var b struct {
			UserID int64 `json:"user_id"`
			Amount int64 `json:"amount"`
		}
		if json.Unmarshal(body, &b) == nil && (b.UserID != 0 && b.UserID != fuzzPayment.UserID || b.Amount != 0 && b.Amount != fuzzPayment.Amount) {
			t.Fatalf("lookup found another payment's record: %s", body)
		}
	})
}

// FuzzParseRetryAfter: never negative, and delay-seconds as written.
func FuzzParseRetryAfter(f *testing.F) {
	for _, s := range []string{"", "0", "5", "-1", "9999999999", "9223372036854775807", " 3 ", "Sun, 06 Nov 1994 08:49:37 GMT", "soon"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		d := parseRetryAfter(v)
		if d < 0 {
			t.Fatalf("parseRetryAfter(%q) = %v", v, d)
		}
		if s, err := strconv.Atoi(v); err == nil && s >= 0 && s < 1<<30 && d != time.Duration(s)*time.Second {
			t.Fatalf("parseRetryAfter(%q) = %v, want %ds", v, d, s)
		}
	})
}

// FuzzBatchReply: the reply to a batch call of two payments. Each payment
// is executed only if the call answered 200 and its own result, in its
// place, says succeeded with an id (and its own key, if any); refused only
// for a 429 (the call's or its own) or a call the processor has no route
// for (404, 405); every label is one of the metric labels.
func FuzzBatchReply(f *testing.F) {
	key := fuzzPayment.IdempotencyKey()
	f.Add(200, []byte(`{"results":[{"status":200,"body":{"id":"p-1","idempotency_key":"`+key+`","status":"succeeded"}},{"status":429,"retry_after":1,"body":{"error":"rate_limited"}}]}`))
	f.Add(200, []byte(`{"results":[{"status":200,"body":{"id":"p-1","status":"declined","reason":"x"}},{"status":422,"body":{"error":"idempotency_key_reuse"}}]}`))
	f.Add(200, []byte(`{"results":[{"status":200,"body":"not json"},{"status":400,"body":{"error":"bad"}}]}`))
	f.Add(200, []byte(`{"results":[{"status":200,"body":{"id":"p-1","status":"succeeded"}}]}`))
	f.Add(200, []byte(`{"results":[]}`))
	f.Add(200, []byte(`{"results":null}`))
	f.Add(200, []byte(`{"results":[{"status":200,"retry_after":-5,"body":{}},{"status":99999,"body":{}}]}`))
	f.Add(404, []byte(`{"error":"not found"}`))
	f.Add(429, []byte(`{"error":"rate_limited"}`))
	f.Add(503, []byte(`{"error":"outage"}`))
	f.Add(500, []byte(``))
	f.Fuzz(func(t *testing.T, code int, body []byte) {
		if code < 100 || code > 999 {
			return
		}
		ps := []Payment{fuzzPayment, {ID: 8, UID: uuid.MustParse("0195f2d4-8c1e-7b4a-9c3e-1a2b3c4d5e70"), UserID: 3457, Amount: 100}}
		c := &client{cfg: Config{Logger: slog.New(slog.DiscardHandler)}, dialect: proposed{base: "http://processor.test"},
			hc: &http.Client{Transport: fakeTransport{code, http.Header{}, body}}}
		b := &batcher{c: c, url: "http://processor.test" + batchPath}
		got := b.do(context.Background(), ps)
		var out struct {
			Results []struct {
				Status int             `json:"status"`
				Body   json.RawMessage `json:"body"`
			} `json:"results"`
		}
		parsed := code == http.StatusOK && json.Unmarshal(body, &out) == nil && len(out.Results) == len(ps)
		for i, p := range ps {
			r := got[i]
			if !replyLabels[r.label] && r.label != "batch_unsupported" {
				t.Fatalf("label %q is not one of the metric labels", r.label)
			}
			if r.retryAfter < 0 {
				t.Fatalf("retry after %v", r.retryAfter)
			}
			switch r.kind {
			case kindSucceeded, kindDeclined:
				if !parsed {
					t.Fatalf("HTTP %d %q: payment %d taken as settled", code, body, i)
				}
				res := out.Results[i]
				var pb paymentBody
				if res.Status < 200 || res.Status > 299 || json.Unmarshal(res.Body, &pb) != nil || pb.Status != r.label ||
					(r.kind == kindSucceeded && (pb.ID == "" || pb.ID != r.ref)) ||
					(pb.IdempotencyKey != "" && pb.IdempotencyKey != p.IdempotencyKey()) {
					t.Fatalf("payment %d taken as %s from %+v", i, r.label, res)
				}
			case kindRefused:
				itemRefused := parsed && out.Results[i].Status == http.StatusTooManyRequests
				if code != http.StatusTooManyRequests && code != http.StatusNotFound && code != http.StatusMethodNotAllowed && !itemRefused {
					t.Fatalf("HTTP %d %q: payment %d taken as not executed", code, body, i)
				}
			case kindRejected, kindConflict:
				status := code
				if parsed {
					status = out.Results[i].Status
				}
				if status < 400 || status > 499 || status == http.StatusRequestTimeout || status == http.StatusTooManyRequests {
					t.Fatalf("HTTP %d %q: payment %d taken as rejected", code, body, i)
				}
			case kindAmbiguous:
			default:
				t.Fatalf("kind %d", r.kind)
			}
		}
	})
}
