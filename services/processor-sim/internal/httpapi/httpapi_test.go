package httpapi_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/finsvc/finance/services/processor-sim/internal/httpapi"
	"github.com/finsvc/finance/services/processor-sim/internal/sim"
)

// fixture is a simulator behind a real HTTP server.
type fixture struct {
	url    string
	client *http.Client
	sim    *sim.Simulator
}

// newFixture starts a simulator with no latency, no faults and a limit no
// test reaches, changed by mod, journaling to dataFile when set.
func newFixture(t *testing.T, dataFile string, mod func(*sim.Settings)) fixture {
	t.Helper()
	st := sim.Settings{API: sim.APIProposed, RateLimit: 1e6, RateBurst: 1e6}
	if mod != nil {
		mod(&st)
	}
	s, err := sim.New(sim.Options{Settings: st, KeyTTL: 72 * time.Hour, Seed: 1, DataFile: dataFile})
	if err != nil {
		t.Fatalf("sim.New: %v", err)
	}
	srv := httptest.NewServer(httpapi.New(s, slog.New(slog.DiscardHandler), prometheus.NewRegistry()))
	// No connection reuse: Go's transport silently retries a request that
	// carries an Idempotency-Key when a reused connection dies, which would
	// hide the lost responses these tests inject.
	client := &http.Client{Transport: checked(t, &http.Transport{DisableKeepAlives: true})}
	t.Cleanup(func() {
		srv.Close()
		if err := s.Close(); err != nil {
			t.Errorf("close simulator: %v", err)
		}
	})
	return fixture{url: srv.URL, client: client, sim: s}
}

// reply is a received HTTP response.
type reply struct {
	code   int
	header http.Header
	body   string
}

// errorText returns the "error" field of the body.
func (r reply) errorText(t *testing.T) string {
	t.Helper()
	var e struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal([]byte(r.body), &e); err != nil {
		t.Fatalf("error body %q: %v", r.body, err)
	}
	return e.Error
}

// tryDo sends a request and returns the transport error, if any.
func (f fixture) tryDo(t *testing.T, method, path string, header map[string]string, body string) (reply, error) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, f.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json") // as docs/processor-openapi.yaml asks
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return reply{}, err
	}
	return reply{code: resp.StatusCode, header: resp.Header, body: string(b)}, nil
}

func (f fixture) do(t *testing.T, method, path string, header map[string]string, body string) reply {
	t.Helper()
	r, err := f.tryDo(t, method, path, header, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return r
}

// payV2 calls POST /v2/payments with key.
func (f fixture) payV2(t *testing.T, key, body string) reply {
	t.Helper()
	return f.do(t, http.MethodPost, "/v2/payments", map[string]string{"Idempotency-Key": key}, body)
}

// payAsIs calls POST /payment.
func (f fixture) payAsIs(t *testing.T, body string) reply {
	t.Helper()
	return f.do(t, http.MethodPost, "/payment", nil, body)
}

func (f fixture) put(t *testing.T, path, body string) reply {
	t.Helper()
	return f.do(t, http.MethodPut, path, nil, body)
}

// executions returns GET /sim/executions?query.
func (f fixture) executions(t *testing.T, query string) []sim.Execution {
	t.Helper()
	r := f.do(t, http.MethodGet, "/sim/executions?"+query, nil, "")
	if r.code != http.StatusOK {
		t.Fatalf("GET /sim/executions?%s = %d %s", query, r.code, r.body)
	}
	var out struct {
		Count      int             `json:"count"`
		Executions []sim.Execution `json:"executions"`
	}
	if err := json.Unmarshal([]byte(r.body), &out); err != nil {
		t.Fatalf("decode executions %q: %v", r.body, err)
	}
	if out.Count != len(out.Executions) {
		t.Errorf("count %d but %d executions", out.Count, len(out.Executions))
	}
	return out.Executions
}

// stats returns GET /sim/stats.
func (f fixture) stats(t *testing.T) httpapi.Stats {
	t.Helper()
	r := f.do(t, http.MethodGet, "/sim/stats", nil, "")
	var st httpapi.Stats
	if err := json.Unmarshal([]byte(r.body), &st); err != nil {
		t.Fatalf("decode stats %q: %v", r.body, err)
	}
	return st
}

func decodeResource(t *testing.T, r reply) sim.Resource {
	t.Helper()
	if r.code != http.StatusOK {
		t.Fatalf("got %d %s, want 200", r.code, r.body)
	}
	var res sim.Resource
	if err := json.Unmarshal([]byte(r.body), &res); err != nil {
		t.Fatalf("decode resource %q: %v", r.body, err)
	}
	return res
}

func wantExecutions(t *testing.T, f fixture, query string, n int) []sim.Execution {
	t.Helper()
	ex := f.executions(t, query)
	if len(ex) != n {
		t.Fatalf("executions?%s = %d %+v, want %d", query, len(ex), ex, n)
	}
	return ex
}

const body1 = `{"user_id":3456,"amount":-3000,"reference":"100001"}`

func TestIdempotentReplayExecutesOnce(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "", nil)
	first := f.payV2(t, "payment-100001", body1)
	second := f.payV2(t, "payment-100001", body1)

	r1, r2 := decodeResource(t, first), decodeResource(t, second)
	if diff := cmp.Diff(r1, r2); diff != "" {
		t.Errorf("replay differs (-first +second):\n%s", diff)
	}
	if first.header.Get("Idempotent-Replayed") != "" || second.header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("Idempotent-Replayed = %q then %q, want \"\" then \"true\"",
			first.header.Get("Idempotent-Replayed"), second.header.Get("Idempotent-Replayed"))
	}
	want := sim.Resource{ID: r1.ID, IdempotencyKey: "payment-100001", UserID: 3456, Amount: -3000,
		Reference: "100001", Status: sim.StatusSucceeded, CreatedAt: r1.CreatedAt}
	if diff := cmp.Diff(want, r1); diff != "" {
		t.Errorf("resource (-want +got):\n%s", diff)
	}
	if got := decodeResource(t, f.do(t, http.MethodGet, "/v2/payments/payment-100001", nil, "")); !cmp.Equal(got, r1) {
		t.Errorf("GET by key = %+v, want %+v", got, r1)
	}
	ex := wantExecutions(t, f, "key=payment-100001", 1)
	if ex[0].Seq != 1 || ex[0].ID != r1.ID || ex[0].API != sim.APIProposed {
		t.Errorf("execution = %+v", ex[0])
	}
	st := f.stats(t)
	if st.Calls != 2 || st.Executed != 1 || st.Replayed != 1 {
		t.Errorf("stats calls/executed/replayed = %d/%d/%d, want 2/1/1", st.Calls, st.Executed, st.Replayed)
	}
}

// POST /sim/expire-keys forgets every key, as 24 hours would: the lookup
// answers 404 and the same call executes again; the record keeps both.
func TestExpireKeys(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "", nil)
	first := decodeResource(t, f.payV2(t, "payment-100001", body1))
	r := f.do(t, http.MethodPost, "/sim/expire-keys", nil, "")
	if r.code != http.StatusOK || strings.TrimSpace(string(r.body)) != `{"expired":1}` {
		t.Fatalf("POST /sim/expire-keys = %d %s, want 200 {\"expired\":1}", r.code, r.body)
	}
	if r := f.do(t, http.MethodGet, "/v2/payments/payment-100001", nil, ""); r.code != http.StatusNotFound {
		t.Errorf("lookup after expiry = %d %s, want 404", r.code, r.body)
	}
	again := f.payV2(t, "payment-100001", body1)
	if second := decodeResource(t, again); second.ID == first.ID || again.header.Get("Idempotent-Replayed") != "" {
		t.Errorf("the call after expiry replayed %s; want a new execution", second.ID)
	}
	wantExecutions(t, f, "key=payment-100001", 2)
}

func TestLookupUnknownKey(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "", nil)
	r := f.do(t, http.MethodGet, "/v2/payments/never-used", nil, "")
	if r.code != http.StatusNotFound || r.errorText(t) != "not_found" {
		t.Errorf("GET unknown key = %d %s, want 404 not_found", r.code, r.body)
	}
}

func TestKeyReuseWithAnotherBody(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "", nil)
	decodeResource(t, f.payV2(t, "k", body1))
	tests := []struct{ name, body string }{
		{"other amount", `{"user_id":3456,"amount":-3001,"reference":"100001"}`},
		{"other user", `{"user_id":3457,"amount":-3000,"reference":"100001"}`},
		{"other reference", `{"user_id":3456,"amount":-3000,"reference":"x"}`},
	}
	// The group returns once its parallel cases are done.
	t.Run("cases", func(t *testing.T) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				r := f.payV2(t, "k", tt.body)
				if r.code != http.StatusUnprocessableEntity || r.errorText(t) != "idempotency_key_reuse" {
					t.Errorf("got %d %s, want 422 idempotency_key_reuse", r.code, r.body)
				}
			})
		}
	})
	wantExecutions(t, f, "", 1)
}

func TestConcurrentSameKeyExecutesOnce(t *testing.T) {
	t.Parallel()
	// Some latency so that the calls overlap while the first is in flight.
	f := newFixture(t, "", func(s *sim.Settings) {
		s.LatencyP50, s.LatencyP99 = sim.Duration(20*time.Millisecond), sim.Duration(20*time.Millisecond)
	})
	const n = 16
	replies := make([]reply, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { replies[i] = f.payV2(t, "same", body1) })
	}
	wg.Wait()
	replayed := 0
	first := decodeResource(t, replies[0])
	for i, r := range replies {
		if got := decodeResource(t, r); got.ID != first.ID {
			t.Errorf("reply %d has id %s, reply 0 has %s", i, got.ID, first.ID)
		}
		if r.header.Get("Idempotent-Replayed") == "true" {
			replayed++
		}
	}
	if replayed != n-1 {
		t.Errorf("%d replies replayed, want %d", replayed, n-1)
	}
	wantExecutions(t, f, "", 1)
}

func TestRateLimitProposed(t *testing.T) {
	t.Parallel()
	// One call, then a token every 1000 s: the second call is over the limit.
	f := newFixture(t, "", func(s *sim.Settings) { s.RateLimit, s.RateBurst = 0.001, 1 })
	decodeResource(t, f.payV2(t, "first", body1))
	r := f.payV2(t, "second", `{"user_id":1,"amount":5}`)
	if r.code != http.StatusTooManyRequests || r.errorText(t) != "rate_limited" {
		t.Fatalf("over the limit = %d %s, want 429 rate_limited", r.code, r.body)
	}
	if secs, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || secs < 1 {
		t.Errorf("Retry-After = %q, want an integer >= 1", r.header.Get("Retry-After"))
	}
	wantExecutions(t, f, "key=second", 0)
	wantExecutions(t, f, "", 1)
	if got := f.do(t, http.MethodGet, "/v2/payments/second", nil, ""); got.code != http.StatusNotFound {
		t.Errorf("GET rejected key = %d, want 404", got.code)
	}
	if st := f.stats(t); st.RateLimited != 1 {
		t.Errorf("rate_limited = %d, want 1", st.RateLimited)
	}
}

func TestAsIsMode(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "", func(s *sim.Settings) { s.API, s.RateLimit, s.RateBurst = sim.APIAsIs, 0.001, 1 })
	for _, tt := range []struct{ method, path string }{
		{http.MethodPost, "/v2/payments"},
		{http.MethodGet, "/v2/payments/k"},
	} {
		r := f.do(t, tt.method, tt.path, map[string]string{"Idempotency-Key": "k"}, body1)
		if r.code != http.StatusNotFound {
			t.Errorf("%s %s in as-is mode = %d, want 404", tt.method, tt.path, r.code)
		}
	}
	r := f.payAsIs(t, `{"user_id":3456,"amount":-3000}`)
	var got struct {
		ID, Status string
	}
	if err := json.Unmarshal([]byte(r.body), &got); r.code != http.StatusOK || err != nil || got.Status != "succeeded" || got.ID == "" {
		t.Fatalf("POST /payment = %d %s, want 200 succeeded", r.code, r.body)
	}
	over := f.payAsIs(t, `{"user_id":3456,"amount":-3000}`)
	if over.code != http.StatusServiceUnavailable || over.errorText(t) != "over capacity" {
		t.Errorf("over capacity = %d %s, want 503 over capacity", over.code, over.body)
	}
	ex := wantExecutions(t, f, "user_id=3456", 1)
	if ex[0].API != sim.APIAsIs || ex[0].IdempotencyKey != "" || ex[0].ID != got.ID {
		t.Errorf("execution = %+v", ex[0])
	}
}

func TestDeclineIsNotAnExecution(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "", func(s *sim.Settings) { s.DeclineRate = 1 })
	res := decodeResource(t, f.payV2(t, "k", body1))
	if res.Status != sim.StatusDeclined || res.Reason == "" {
		t.Errorf("resource = %+v, want declined with a reason", res)
	}
	again := f.payV2(t, "k", body1)
	if got := decodeResource(t, again); got.ID != res.ID || again.header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("retry of a declined key = %+v, want the decline replayed", got)
	}
	r := f.payAsIs(t, `{"user_id":1,"amount":10}`)
	if r.code != http.StatusOK || !strings.Contains(r.body, `"status":"declined"`) || !strings.Contains(r.body, `"reason"`) {
		t.Errorf("as-is decline = %d %s", r.code, r.body)
	}
	wantExecutions(t, f, "", 0)
	if st := f.stats(t); st.Declined != 2 || st.Executed != 0 {
		t.Errorf("declined/executed = %d/%d, want 2/0", st.Declined, st.Executed)
	}
}

func TestInjectedErrorDoesNotExecute(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "", func(s *sim.Settings) { s.ErrorRate = 1 })
	if r := f.payV2(t, "k", body1); r.code != http.StatusInternalServerError {
		t.Errorf("proposed = %d %s, want 500", r.code, r.body)
	}
	if r := f.payAsIs(t, `{"user_id":1,"amount":10}`); r.code != http.StatusInternalServerError {
		t.Errorf("as-is = %d %s, want 500", r.code, r.body)
	}
	wantExecutions(t, f, "", 0)
	if r := f.do(t, http.MethodGet, "/v2/payments/k", nil, ""); r.code != http.StatusNotFound {
		t.Errorf("GET key after a 500 = %d, want 404", r.code)
	}
	// The key was not kept: a retry with it executes once the errors stop.
	if r := f.put(t, "/sim/config", `{"error_rate":0}`); r.code != http.StatusOK {
		t.Fatalf("PUT /sim/config = %d %s", r.code, r.body)
	}
	decodeResource(t, f.payV2(t, "k", body1))
	wantExecutions(t, f, "key=k", 1)
	if st := f.stats(t); st.ErrorsInjected != 2 {
		t.Errorf("errors_injected = %d, want 2", st.ErrorsInjected)
	}
}

func TestLostResponseStillExecutes(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "", func(s *sim.Settings) { s.LostResponseRate = 1 })
	if r, err := f.tryDo(t, http.MethodPost, "/v2/payments", map[string]string{"Idempotency-Key": "k"}, body1); err == nil {
		t.Errorf("proposed: got %d %s, want a connection error", r.code, r.body)
	}
	if r, err := f.tryDo(t, http.MethodPost, "/payment", nil, `{"user_id":99,"amount":10}`); err == nil {
		t.Errorf("as-is: got %d %s, want a connection error", r.code, r.body)
	}
	wantExecutions(t, f, "key=k", 1)
	wantExecutions(t, f, "user_id=99", 1)

	// The ambiguity is resolved by looking up the key, or by retrying it.
	got := decodeResource(t, f.do(t, http.MethodGet, "/v2/payments/k", nil, ""))
	if got.Status != sim.StatusSucceeded {
		t.Errorf("GET by key = %+v, want succeeded", got)
	}
	f.put(t, "/sim/config", `{"lost_response_rate":0}`)
	retry := f.payV2(t, "k", body1)
	if decodeResource(t, retry).ID != got.ID || retry.header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("retry = %s, want a replay of %s", retry.body, got.ID)
	}
	wantExecutions(t, f, "", 2)
	if st := f.stats(t); st.ResponsesDropped != 2 {
		t.Errorf("responses_dropped = %d, want 2", st.ResponsesDropped)
	}
}

func TestOutage(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "", nil)
	decodeResource(t, f.payV2(t, "before", body1))

	r := f.do(t, http.MethodPost, "/sim/outage", nil, `{"duration":"20s"}`)
	if r.code != http.StatusOK || !strings.Contains(r.body, `"active":true`) {
		t.Fatalf("POST /sim/outage = %d %s", r.code, r.body)
	}
	for _, c := range []struct {
		name string
		r    reply
	}{
		{"proposed", f.payV2(t, "during", `{"user_id":1,"amount":1}`)},
		{"as-is", f.payAsIs(t, `{"user_id":1,"amount":1}`)},
		{"lookup", f.do(t, http.MethodGet, "/v2/payments/before", nil, "")},
	} {
		secs, err := strconv.Atoi(c.r.header.Get("Retry-After"))
		if c.r.code != http.StatusServiceUnavailable || c.r.errorText(t) != "outage" || err != nil || secs < 1 || secs > 20 {
			t.Errorf("%s during outage = %d %s (Retry-After %q), want 503 outage with Retry-After in [1,20]",
				c.name, c.r.code, c.r.body, c.r.header.Get("Retry-After"))
		}
	}
	wantExecutions(t, f, "", 1)
	if st := f.stats(t); st.OutageUntil == nil || st.OutageRejected != 3 {
		t.Errorf("stats during outage: outage_until %v, outage_rejected %d; want set and 3", st.OutageUntil, st.OutageRejected)
	}

	if r := f.do(t, http.MethodDelete, "/sim/outage", nil, ""); r.code != http.StatusOK || !strings.Contains(r.body, `"active":false`) {
		t.Fatalf("DELETE /sim/outage = %d %s", r.code, r.body)
	}
	decodeResource(t, f.payV2(t, "during", `{"user_id":1,"amount":1}`))
	wantExecutions(t, f, "", 2)
}

func TestBadInputExecutesNothing(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "", nil)
	key := map[string]string{"Idempotency-Key": "k"}
	tests := []struct {
		name, path string
		header     map[string]string
		body       string
		wantErr    string // substring of the error message
	}{
		{"malformed json", "/v2/payments", key, `{"user_id":1,`, "malformed JSON"},
		{"unknown field", "/v2/payments", key, `{"user_id":1,"amount":5,"merchant":2}`, `unknown field "merchant"`},
		{"missing user_id", "/v2/payments", key, `{"amount":5}`, "user_id is required"},
		{"user_id zero", "/v2/payments", key, `{"user_id":0,"amount":5}`, "user_id must be a positive integer"},
		{"amount zero", "/v2/payments", key, `{"user_id":1,"amount":0}`, "amount must not be 0"},
		{"amount missing", "/v2/payments", key, `{"user_id":1}`, "amount is required"},
		{"amount too large", "/v2/payments", key, `{"user_id":1,"amount":1000000000001}`, "within"},
		{"amount not integer", "/v2/payments", key, `{"user_id":1,"amount":1.5}`, "malformed JSON"},
		{"two objects", "/v2/payments", key, `{"user_id":1,"amount":5}{}`, "single JSON object"},
		{"empty body", "/v2/payments", key, ``, "empty"},
		{"no key", "/v2/payments", nil, `{"user_id":1,"amount":5}`, "Idempotency-Key header is required"},
		{"long key", "/v2/payments", map[string]string{"Idempotency-Key": strings.Repeat("k", 256)}, `{"user_id":1,"amount":5}`, "at most 255"},
		{"as-is malformed", "/payment", nil, `[1,2]`, "malformed JSON"},
		{"as-is unknown field", "/payment", nil, `{"user_id":1,"amount":5,"reference":"x"}`, `unknown field "reference"`},
		{"as-is missing user_id", "/payment", nil, `{"amount":5}`, "user_id is required"},
		{"as-is amount zero", "/payment", nil, `{"user_id":1,"amount":0}`, "amount must not be 0"},
	}
	t.Run("cases", func(t *testing.T) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				r := f.do(t, http.MethodPost, tt.path, tt.header, tt.body)
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
	if st := f.stats(t); st.BadRequests != int64(len(tests)) || st.Calls != int64(len(tests)) {
		t.Errorf("bad_requests/calls = %d/%d, want %d/%d", st.BadRequests, st.Calls, len(tests), len(tests))
	}
}

func TestConfig(t *testing.T) {
	t.Parallel()
	base := sim.Settings{API: sim.APIProposed, RateLimit: 1e6, RateBurst: 1e6}
	tests := []struct {
		name    string
		body    string
		want    sim.Settings // when the change is accepted
		wantErr []string     // substrings of the 400 message
	}{
		{"rates", `{"decline_rate":0.25,"error_rate":0.1,"lost_response_rate":1}`,
			sim.Settings{API: sim.APIProposed, RateLimit: 1e6, RateBurst: 1e6, DeclineRate: 0.25, ErrorRate: 0.1, LostResponseRate: 1}, nil},
		{"limit resets burst", `{"rate_limit":50}`,
			sim.Settings{API: sim.APIProposed, RateLimit: 50, RateBurst: 50}, nil},
		{"limit and burst", `{"rate_limit":50,"rate_burst":5}`,
			sim.Settings{API: sim.APIProposed, RateLimit: 50, RateBurst: 5}, nil},
		{"latency", `{"latency_p50":"40ms","latency_p99":"1s"}`,
			sim.Settings{API: sim.APIProposed, RateLimit: 1e6, RateBurst: 1e6,
				LatencyP50: sim.Duration(40 * time.Millisecond), LatencyP99: sim.Duration(time.Second)}, nil},
		{"api", `{"api":"as-is"}`, sim.Settings{API: sim.APIAsIs, RateLimit: 1e6, RateBurst: 1e6}, nil},
		{"rate above 1", `{"decline_rate":1.5}`, sim.Settings{}, []string{"decline_rate 1.5: must be within [0,1]"}},
		{"negative rate", `{"error_rate":-0.5}`, sim.Settings{}, []string{"error_rate -0.5"}},
		{"zero limit", `{"rate_limit":0}`, sim.Settings{}, []string{"rate_limit 0: must be a number > 0"}},
		{"several at once", `{"rate_limit":-1,"lost_response_rate":7}`, sim.Settings{}, []string{"rate_limit -1", "lost_response_rate 7"}},
		{"bad api", `{"api":"v3"}`, sim.Settings{}, []string{`api "v3"`}},
		{"p99 below p50", `{"latency_p50":"1s","latency_p99":"1ms"}`, sim.Settings{}, []string{"below latency_p50"}},
		{"bad duration", `{"latency_p50":50}`, sim.Settings{}, []string{"duration string"}},
		{"unknown field", `{"decline":0.5}`, sim.Settings{}, []string{`unknown field "decline"`}},
		{"malformed", `{`, sim.Settings{}, []string{"malformed JSON"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, "", nil)
			r := f.put(t, "/sim/config", tt.body)
			var got sim.Settings
			if len(tt.wantErr) > 0 {
				if r.code != http.StatusBadRequest {
					t.Fatalf("got %d %s, want 400", r.code, r.body)
				}
				msg := r.errorText(t)
				for _, w := range tt.wantErr {
					if !strings.Contains(msg, w) {
						t.Errorf("error %q, want it to contain %q", msg, w)
					}
				}
				tt.want = base // nothing changed
			} else if r.code != http.StatusOK {
				t.Fatalf("got %d %s, want 200", r.code, r.body)
			}
			now := f.do(t, http.MethodGet, "/sim/config", nil, "")
			if err := json.Unmarshal([]byte(now.body), &got); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("settings after PUT (-want +got):\n%s", diff)
			}
		})
	}
}

func TestOutageValidation(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "", nil)
	for _, body := range []string{`{}`, `{"duration":"0s"}`, `{"duration":"-5s"}`, `{"duration":"soon"}`, `{"duration":"20s","x":1}`} {
		if r := f.do(t, http.MethodPost, "/sim/outage", nil, body); r.code != http.StatusBadRequest {
			t.Errorf("POST /sim/outage %s = %d %s, want 400", body, r.code, r.body)
		}
	}
	decodeResource(t, f.payV2(t, "k", body1))
}

func TestExecutionsFilter(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "", nil)
	decodeResource(t, f.payV2(t, "a", `{"user_id":1,"amount":10}`))
	decodeResource(t, f.payV2(t, "b", `{"user_id":2,"amount":20}`))
	decodeResource(t, f.payV2(t, "c", `{"user_id":1,"amount":30}`))
	tests := []struct {
		query    string
		wantKeys []string
	}{
		{"", []string{"a", "b", "c"}},
		{"user_id=1", []string{"a", "c"}},
		{"user_id=2", []string{"b"}},
		{"user_id=3", nil},
		{"key=b", []string{"b"}},
		{"key=b&user_id=1", nil},
		{"key=c&user_id=1", []string{"c"}},
		{"key=zzz", nil},
		{"after_seq=0", []string{"a", "b", "c"}},
		{"after_seq=1", []string{"b", "c"}},
		{"after_seq=3", nil},
		{"after_seq=99", nil},
		{"after_seq=1&user_id=1", []string{"c"}},
		{"after_seq=2&key=b", nil},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			t.Parallel()
			var keys []string
			for _, e := range f.executions(t, tt.query) {
				keys = append(keys, e.IdempotencyKey)
			}
			if diff := cmp.Diff(tt.wantKeys, keys); diff != "" {
				t.Errorf("keys (-want +got):\n%s", diff)
			}
		})
	}
	for _, q := range []string{"user_id=abc", "after_seq=-1", "after_seq=x"} {
		if r := f.do(t, http.MethodGet, "/sim/executions?"+q, nil, ""); r.code != http.StatusBadRequest {
			t.Errorf("%s = %d, want 400", q, r.code)
		}
	}
}

func TestPersistenceReload(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "sim.jsonl")
	f1 := newFixture(t, path, nil)
	first := decodeResource(t, f1.payV2(t, "payment-1", body1))
	f1.payAsIs(t, `{"user_id":5,"amount":50}`)
	before := f1.executions(t, "")
	if err := f1.sim.Close(); err != nil {
		t.Fatal(err)
	}

	f2 := newFixture(t, path, nil)
	if diff := cmp.Diff(before, f2.executions(t, "")); diff != "" {
		t.Errorf("executions after restart (-before +after):\n%s", diff)
	}
	if got := decodeResource(t, f2.do(t, http.MethodGet, "/v2/payments/payment-1", nil, "")); !cmp.Equal(got, first) {
		t.Errorf("GET by key after restart = %+v, want %+v", got, first)
	}
	r := f2.payV2(t, "payment-1", body1)
	if decodeResource(t, r).ID != first.ID || r.header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("retry after restart = %s, want a replay", r.body)
	}
	wantExecutions(t, f2, "", 2)
}

func TestOpsRoutes(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "", nil)
	decodeResource(t, f.payV2(t, "k", body1))
	for _, p := range []string{"/healthz", "/readyz"} {
		if r := f.do(t, http.MethodGet, p, nil, ""); r.code != http.StatusOK {
			t.Errorf("GET %s = %d", p, r.code)
		}
	}
	m := f.do(t, http.MethodGet, "/metrics", nil, "").body
	for _, want := range []string{
		`sim_calls_total{api="proposed",result="succeeded"} 1`,
		`sim_executions_total{api="proposed"} 1`,
		`sim_call_duration_seconds_count{api="proposed"} 1`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}
