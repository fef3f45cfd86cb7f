package httpapi_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/finsvc/finance/services/processor-sim/internal/sim"
)

// batchItem is one result of POST /v2/payment-batches.
type batchItem struct {
	Status             int             `json:"status"`
	IdempotentReplayed bool            `json:"idempotent_replayed"`
	RetryAfter         int             `json:"retry_after"`
	Body               json.RawMessage `json:"body"`
}

// resource decodes the item's body as a payment, which a 200 carries.
func (b batchItem) resource(t *testing.T) sim.Resource {
	t.Helper()
	return decodeResource(t, reply{code: b.Status, body: string(b.Body)})
}

// errorText returns the "error" field of the item's body.
func (b batchItem) errorText(t *testing.T) string {
	t.Helper()
	return reply{body: string(b.Body)}.errorText(t)
}

// payBatch calls POST /v2/payment-batches with the payments given as JSON
// objects.
func (f fixture) payBatch(t *testing.T, payments ...string) reply {
	t.Helper()
	return f.do(t, http.MethodPost, "/v2/payment-batches", nil, `{"payments":[`+strings.Join(payments, ",")+`]}`)
}

// batchResults decodes a batch's 200 answer.
func batchResults(t *testing.T, r reply) []batchItem {
	t.Helper()
	if r.code != http.StatusOK {
		t.Fatalf("batch answered %d %s, want 200", r.code, r.body)
	}
	var out struct {
		Results []batchItem `json:"results"`
	}
	dec := json.NewDecoder(strings.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&out); err != nil {
		t.Fatalf("decode batch answer %q: %v", r.body, err)
	}
	return out.Results
}

// payment is one payment of a batch, as JSON.
func payment(key string, user, amount int64) string {
	return fmt.Sprintf(`{"idempotency_key":%q,"user_id":%d,"amount":%d,"reference":"ref-%s"}`, key, user, amount, key)
}

// payments returns n payments with keys prefix-0, prefix-1, …
func payments(prefix string, n int) []string {
	p := make([]string, n)
	for i := range p {
		p[i] = payment(fmt.Sprintf("%s-%d", prefix, i), int64(i+1), int64(-100*(i+1)))
	}
	return p
}

// TestBatchExecutesEachOnce: every payment of a batch is executed and
// recorded once, answered with the resource POST /v2/payments would give,
// found by its key, and counted as one call.
func TestBatchExecutesEachOnce(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "", nil)
	res := batchResults(t, f.payBatch(t, payments("b", 3)...))
	if len(res) != 3 {
		t.Fatalf("%d results, want 3", len(res))
	}
	ex := wantExecutions(t, f, "", 3)
	for i, it := range res {
		key := fmt.Sprintf("b-%d", i)
		got := it.resource(t)
		want := sim.Resource{ID: ex[i].ID, IdempotencyKey: key, UserID: int64(i + 1), Amount: int64(-100 * (i + 1)),
			Reference: "ref-" + key, Status: sim.StatusSucceeded, CreatedAt: got.CreatedAt}
		if diff := cmp.Diff(want, got); diff != "" || it.IdempotentReplayed || it.RetryAfter != 0 {
			t.Errorf("result %d = %+v (-want +got):\n%s", i, it, diff)
		}
		if ex[i].IdempotencyKey != key || ex[i].API != sim.APIProposed || !ex[i].ExecutedAt.Equal(got.CreatedAt) {
			t.Errorf("execution %d = %+v, want %s executed at %v", i, ex[i], key, got.CreatedAt)
		}
		if lookup := decodeResource(t, f.do(t, http.MethodGet, "/v2/payments/"+key, nil, "")); !cmp.Equal(lookup, got) {
			t.Errorf("GET %s = %+v, want %+v", key, lookup, got)
		}
	}
	st := f.stats(t)
	if st.Batches != 1 || st.Calls != 3 || st.Executed != 3 {
		t.Errorf("stats batches/calls/executed = %d/%d/%d, want 1/3/3", st.Batches, st.Calls, st.Executed)
	}
	m := f.do(t, http.MethodGet, "/metrics", nil, "").body
	for _, want := range []string{
		`sim_calls_total{api="proposed",result="succeeded"} 3`,
		`sim_executions_total{api="proposed"} 3`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// TestBatchReplay: a key already settled, alone or in a batch, is answered
// with the earlier resource and idempotent_replayed; nothing runs again.
func TestBatchReplay(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "", nil)
	first := decodeResource(t, f.payV2(t, "a", `{"user_id":1,"amount":10,"reference":"ref-a"}`))
	res := batchResults(t, f.payBatch(t, payment("a", 1, 10), payment("b", 2, 20)))
	if got := res[0].resource(t); !res[0].IdempotentReplayed || !cmp.Equal(got, first) {
		t.Errorf("result 0 = %+v, want a replay of %+v", res[0], first)
	}
	b := res[1].resource(t)
	if res[1].IdempotentReplayed || b.Status != sim.StatusSucceeded {
		t.Errorf("result 1 = %+v, want b executed", res[1])
	}
	again := batchResults(t, f.payBatch(t, payment("a", 1, 10), payment("b", 2, 20)))
	for i, want := range []sim.Resource{first, b} {
		if got := again[i].resource(t); !again[i].IdempotentReplayed || !cmp.Equal(got, want) {
			t.Errorf("the same batch again, result %d = %+v, want a replay of %+v", i, again[i], want)
		}
	}
	wantExecutions(t, f, "", 2)
	if st := f.stats(t); st.Replayed != 3 || st.Executed != 2 {
		t.Errorf("replayed/executed = %d/%d, want 3/2", st.Replayed, st.Executed)
	}
}

// TestBatchKeyReuse: a key of another request is that payment's 422; the
// others execute.
func TestBatchKeyReuse(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "", nil)
	decodeResource(t, f.payV2(t, "a", `{"user_id":1,"amount":10,"reference":"ref-a"}`))
	res := batchResults(t, f.payBatch(t, payment("b", 2, 20), payment("a", 1, 11)))
	if res[0].resource(t).IdempotencyKey != "b" {
		t.Errorf("result 0 = %+v, want b executed", res[0])
	}
	if res[1].Status != http.StatusUnprocessableEntity || res[1].errorText(t) != "idempotency_key_reuse" {
		t.Errorf("result 1 = %d %s, want 422 idempotency_key_reuse", res[1].Status, res[1].Body)
	}
	wantExecutions(t, f, "key=a", 1)
	wantExecutions(t, f, "key=b", 1)
	if st := f.stats(t); st.KeyReuse != 1 {
		t.Errorf("key_reuse = %d, want 1", st.KeyReuse)
	}
}

// TestBatchRateLimit: each payment takes a token; those above the limit get
// a 429 with retry_after, execute nothing and take no key.
func TestBatchRateLimit(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "", func(s *sim.Settings) { s.RateLimit, s.RateBurst = 3, 3 })
	res := batchResults(t, f.payBatch(t, payments("b", 5)...))
	for i, it := range res[:3] {
		if it.resource(t).Status != sim.StatusSucceeded {
			t.Errorf("result %d = %+v, want executed", i, it)
		}
	}
	for i, it := range res[3:] {
		if it.Status != http.StatusTooManyRequests || it.RetryAfter < 1 || it.errorText(t) != "rate_limited" {
			t.Errorf("result %d = %+v, want 429 rate_limited with retry_after >= 1", 3+i, it)
		}
	}
	wantExecutions(t, f, "", 3)
	if r := f.do(t, http.MethodGet, "/v2/payments/b-4", nil, ""); r.code != http.StatusNotFound {
		t.Errorf("GET a refused key = %d, want 404", r.code)
	}
	if st := f.stats(t); st.RateLimited != 2 || st.Calls != 5 {
		t.Errorf("rate_limited/calls = %d/%d, want 2/5", st.RateLimited, st.Calls)
	}
}

// TestBatchItemBadRequest: a payment POST /v2/payments would refuse gets
// its 400, with the same message; the others execute.
func TestBatchItemBadRequest(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "", nil)
	long := strings.Repeat("k", 256)
	items := []struct {
		json    string
		wantErr string // substring of the error; "" for executed
	}{
		{payment("ok-1", 1, 10), ""},
		{`{"idempotency_key":"x1","amount":5}`, "user_id is required"},
		{`{"idempotency_key":"x2","user_id":0,"amount":5}`, "user_id must be a positive integer"},
		{`{"idempotency_key":"x3","user_id":1,"amount":0}`, "amount must not be 0"},
		{`{"idempotency_key":"x4","user_id":1}`, "amount is required"},
		{`{"idempotency_key":"x5","user_id":1,"amount":1000000000001}`, "within"},
		{`{"user_id":1,"amount":5}`, "idempotency_key is required"},
		{`{"idempotency_key":"   ","user_id":1,"amount":5}`, "idempotency_key is required"},
		{`{"idempotency_key":"` + long + `","user_id":1,"amount":5}`, "at most 255"},
		{`{"idempotency_key":"x6","user_id":1,"amount":5,"reference":"` + long + `"}`, "reference must be at most 255 bytes"},
		{payment("ok-2", 2, 20), ""},
	}
	var bodies []string
	for _, it := range items {
		bodies = append(bodies, it.json)
	}
	res := batchResults(t, f.payBatch(t, bodies...))
	for i, it := range items {
		if it.wantErr == "" {
			if res[i].resource(t).Status != sim.StatusSucceeded {
				t.Errorf("result %d = %+v, want executed", i, res[i])
			}
			continue
		}
		if res[i].Status != http.StatusBadRequest || !strings.Contains(res[i].errorText(t), it.wantErr) {
			t.Errorf("result %d = %d %s, want 400 containing %q", i, res[i].Status, res[i].Body, it.wantErr)
		}
	}
	wantExecutions(t, f, "", 2)
	if st := f.stats(t); st.BadRequests != int64(len(items)-2) || st.Calls != int64(len(items)) {
		t.Errorf("bad_requests/calls = %d/%d, want %d/%d", st.BadRequests, st.Calls, len(items)-2, len(items))
	}
}

// TestBatchMalformed: a batch that is not one is refused whole with 400;
// nothing executes and no key is taken.
func TestBatchMalformed(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "", nil)
	batch := func(p ...string) string { return `{"payments":[` + strings.Join(p, ",") + `]}` }
	tests := []struct {
		name, body string
		wantErr    string // substring of the error message
	}{
		{"empty body", ``, "empty"},
		{"malformed json", `{"payments":[`, "malformed JSON"},
		{"not an object", `[1,2]`, "malformed JSON"},
		{"trailing data", batch(payment("t", 1, 1)) + `{}`, "single JSON object"},
		{"unknown field", `{"payments":[],"dry_run":true}`, `unknown field "dry_run"`},
		{"unknown item field", batch(`{"idempotency_key":"u","user_id":1,"amount":5,"merchant":2}`), `unknown field "merchant"`},
		{"amount not integer", batch(`{"idempotency_key":"n","user_id":1,"amount":1.5}`), "malformed JSON"},
		{"payments missing", `{}`, "payments is required"},
		{"payments null", `{"payments":null}`, "payments is required"},
		{"payments empty", batch(), "payments is required"},
		{"null payment", batch(payment("z", 1, 1), `null`), "payments[1] is null"},
		{"101 payments", batch(payments("over", sim.MaxBatch+1)...), "at most 100"},
		{"key twice", batch(payment("d", 1, 1), payment("e", 1, 1), payment("d", 1, 1)), `idempotency key "d" twice`},
		{"key twice once trimmed", batch(payment("s", 1, 1), payment(" s ", 1, 1)), `idempotency key "s" twice`},
	}
	t.Run("cases", func(t *testing.T) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				r := f.do(t, http.MethodPost, "/v2/payment-batches", nil, tt.body)
				if r.code != http.StatusBadRequest {
					t.Fatalf("got %d %s, want 400", r.code, r.body)
				}
				if msg := r.errorText(t); !strings.Contains(msg, tt.wantErr) {
					t.Errorf("error %q, want it to contain %q", msg, tt.wantErr)
				}
			})
		}
	})
	wantExecutions(t, f, "", 0)
	if st := f.stats(t); st.IdempotencyKeys != 0 || st.BadRequests != int64(len(tests)) || st.Batches != int64(len(tests)) {
		t.Errorf("keys/bad_requests/batches = %d/%d/%d, want 0/%d/%d", st.IdempotencyKeys, st.BadRequests, st.Batches, len(tests), len(tests))
	}
}

// TestBatchLargest: MaxBatch payments with keys and references of the
// longest allowed, every byte escaped in the JSON, fit in a batch's body.
func TestBatchLargest(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "", nil)
	var body bytes.Buffer
	body.WriteString(`{"payments":[`)
	for i := range sim.MaxBatch {
		if i > 0 {
			body.WriteByte(',')
		}
		key := fmt.Sprintf("%03d", i) + strings.Repeat("k", 252)
		fmt.Fprintf(&body, `{"idempotency_key":"%s","user_id":%d,"amount":-1000000000000,"reference":"%s"}`,
			escapeAll(key), 9223372036854775807-i, escapeAll(strings.Repeat("r", 255)))
	}
	body.WriteString(`]}`)
	res := batchResults(t, f.do(t, http.MethodPost, "/v2/payment-batches", nil, body.String()))
	if len(res) != sim.MaxBatch {
		t.Fatalf("%d results, want %d", len(res), sim.MaxBatch)
	}
	for i, it := range res {
		if it.Status != http.StatusOK {
			t.Errorf("result %d = %d %s, want 200", i, it.Status, it.Body)
		}
	}
	wantExecutions(t, f, "", sim.MaxBatch)
}

// escapeAll writes every byte of an ASCII string as a \u escape, the
// longest JSON spelling of it.
func escapeAll(s string) string {
	var b strings.Builder
	for i := range len(s) {
		fmt.Fprintf(&b, `\u%04x`, s[i])
	}
	return b.String()
}

// TestBatchFailsWhole: an outage (503 with Retry-After) and an injected
// error (500) answer for the whole batch; nothing executes and the keys
// stay free, so the same batch executes once the fault is gone.
func TestBatchFailsWhole(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		mod      func(*sim.Settings)
		outage   bool
		clear    string // PUT /sim/config body that ends the fault; "" for the outage
		wantCode int
		wantErr  string
	}{
		{"outage", nil, true, "", http.StatusServiceUnavailable, "outage"},
		{"injected error", func(s *sim.Settings) { s.ErrorRate = 1 }, false, `{"error_rate":0}`, http.StatusInternalServerError, "internal error (simulated)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, "", tt.mod)
			if tt.outage {
				f.do(t, http.MethodPost, "/sim/outage", nil, `{"duration":"20s"}`)
			}
			r := f.payBatch(t, payments("b", 3)...)
			if r.code != tt.wantCode || r.errorText(t) != tt.wantErr {
				t.Fatalf("got %d %s, want %d %s", r.code, r.body, tt.wantCode, tt.wantErr)
			}
			if tt.outage {
				if secs, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || secs < 1 || secs > 20 {
					t.Errorf("Retry-After = %q, want in [1,20]", r.header.Get("Retry-After"))
				}
			}
			wantExecutions(t, f, "", 0)
			if st := f.stats(t); st.IdempotencyKeys != 0 || st.Calls != 3 {
				t.Errorf("keys/calls = %d/%d, want 0/3", st.IdempotencyKeys, st.Calls)
			}
			if tt.outage {
				f.do(t, http.MethodDelete, "/sim/outage", nil, "")
			} else {
				f.put(t, "/sim/config", tt.clear)
			}
			for i, it := range batchResults(t, f.payBatch(t, payments("b", 3)...)) {
				if it.IdempotentReplayed || it.resource(t).Status != sim.StatusSucceeded {
					t.Errorf("after the fault, result %d = %+v, want executed", i, it)
				}
			}
			wantExecutions(t, f, "", 3)
		})
	}
}

// TestBatchLostResponse: the lost reply is drawn once for the batch: every
// payment executes and the connection closes without a reply; retrying the
// batch replays them all.
func TestBatchLostResponse(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "", func(s *sim.Settings) { s.LostResponseRate = 1 })
	body := `{"payments":[` + strings.Join(payments("b", 3), ",") + `]}`
	if r, err := f.tryDo(t, http.MethodPost, "/v2/payment-batches", nil, body); err == nil {
		t.Fatalf("got %d %s, want a connection error", r.code, r.body)
	}
	ex := wantExecutions(t, f, "", 3)
	f.put(t, "/sim/config", `{"lost_response_rate":0}`)
	for i, it := range batchResults(t, f.payBatch(t, payments("b", 3)...)) {
		if got := it.resource(t); !it.IdempotentReplayed || got.ID != ex[i].ID {
			t.Errorf("retry, result %d = %+v, want a replay of %s", i, it, ex[i].ID)
		}
	}
	if st := f.stats(t); st.ResponsesDropped != 3 {
		t.Errorf("responses_dropped = %d, want 3 (one per payment)", st.ResponsesDropped)
	}
}

// TestBatchDeclines: declined payments are 200 results with the declined
// resource, as alone; they are not executions, and they replay as declines.
func TestBatchDeclines(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "", func(s *sim.Settings) { s.DeclineRate = 1 })
	res := batchResults(t, f.payBatch(t, payments("b", 2)...))
	for i, it := range res {
		if got := it.resource(t); got.Status != sim.StatusDeclined || got.Reason == "" {
			t.Errorf("result %d = %+v, want declined with a reason", i, it)
		}
	}
	again := batchResults(t, f.payBatch(t, payments("b", 2)...))
	for i, it := range again {
		if got := it.resource(t); !it.IdempotentReplayed || got.ID != res[i].resource(t).ID {
			t.Errorf("the batch again, result %d = %+v, want the decline replayed", i, it)
		}
	}
	wantExecutions(t, f, "", 0)
	if st := f.stats(t); st.Declined != 2 || st.Executed != 0 {
		t.Errorf("declined/executed = %d/%d, want 2/0", st.Declined, st.Executed)
	}
}

// TestBatchAsIsMode: the batch route is part of the proposed API: 404 in
// as-is mode, nothing executed.
func TestBatchAsIsMode(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "", func(s *sim.Settings) { s.API = sim.APIAsIs })
	if r := f.payBatch(t, payments("b", 2)...); r.code != http.StatusNotFound {
		t.Errorf("batch in as-is mode = %d %s, want 404", r.code, r.body)
	}
	wantExecutions(t, f, "", 0)
}
