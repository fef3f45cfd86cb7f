package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/finsvc/finance/pkg/auth"
	"github.com/finsvc/finance/pkg/obs"
	"github.com/finsvc/finance/pkg/pgtest"
	"github.com/finsvc/finance/services/legacy/internal/dbtest"
	"github.com/finsvc/finance/services/legacy/internal/httpapi"
	"github.com/finsvc/finance/services/legacy/internal/processor"
	"github.com/finsvc/finance/services/legacy/internal/store"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

var secret = []byte(auth.DevSecret)

// fakeProcessor is the as-is processor API: POST /payment {user_id, amount}.
// It records what it executed, like the simulator's /sim/executions.
type fakeProcessor struct {
	mode string // succeed, decline, over-capacity, error, slow, garbage

	mu       sync.Mutex
	executed []execution
}

type execution struct {
	UserID int64 `json:"user_id"`
	Amount int64 `json:"amount"`
}

func (f *fakeProcessor) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/payment" {
		http.NotFound(w, r)
		return
	}
	var e execution
	if err := json.NewDecoder(r.Body).Decode(&e); err != nil {
		http.Error(w, `{"error":"bad body"}`, http.StatusBadRequest)
		return
	}
	execute := func() {
		f.mu.Lock()
		f.executed = append(f.executed, e)
		f.mu.Unlock()
	}
	switch f.mode {
	case "succeed":
		execute()
		_, _ = io.WriteString(w, `{"id":"ref-1","status":"succeeded"}`)
	case "decline":
		_, _ = io.WriteString(w, `{"id":"ref-2","status":"declined","reason":"card blocked"}`)
	case "over-capacity":
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, `{"error":"over capacity"}`)
	case "error":
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = io.WriteString(w, `{"error":"boom"}`)
	case "garbage":
		execute()
		_, _ = io.WriteString(w, `not json`)
	case "slow":
		// Executes, then answers after the service's timeout: the
		// ambiguous case the as-is API cannot resolve.
		execute()
		select {
		case <-time.After(2 * time.Second):
		case <-r.Context().Done():
		}
		_, _ = io.WriteString(w, `{"id":"ref-3","status":"succeeded"}`)
	}
}

func (f *fakeProcessor) executions() []execution {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]execution(nil), f.executed...)
}

type fixture struct {
	t     *testing.T
	srv   *httptest.Server
	proc  *fakeProcessor
	store *store.Store
}

func newFixture(t *testing.T, mode string) fixture {
	t.Helper()
	pool := dbtest.NewPool(t)
	st := store.New(pool)
	if _, err := store.Seed(context.Background(), st, store.SeedOptions{Demo: true, Users: 2, StartID: 100, Balance: 10_000}); err != nil {
		t.Fatal(err)
	}
	fp := &fakeProcessor{mode: mode}
	ps := httptest.NewServer(fp)
	t.Cleanup(ps.Close)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	h := httpapi.New(logger, st, processor.New(ps.URL, 200*time.Millisecond), auth.NewVerifier(secret), obs.NewRegistry())
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return fixture{t: t, srv: srv, proc: fp, store: st}
}

func token(t *testing.T, user int64, admin bool) string {
	t.Helper()
	tok, err := auth.Mint(secret, user, admin, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func (f fixture) do(method, path, tok, body string) (int, []byte) {
	f.t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, strings.NewReader(body))
	if err != nil {
		f.t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (f fixture) balance(user int64) int64 {
	f.t.Helper()
	fd, err := f.store.Feed(context.Background(), user)
	if err != nil {
		f.t.Fatal(err)
	}
	return fd.Balance
}

func TestCreatePaymentByProcessorOutcome(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		mode        string
		wantCode    int
		wantBalance int64 // of user 100, seeded with 10000
		wantExec    int   // what the processor executed
	}{
		{mode: "succeed", wantCode: http.StatusCreated, wantBalance: 9_750, wantExec: 1},
		{mode: "decline", wantCode: http.StatusPaymentRequired, wantBalance: 10_000},
		{mode: "over-capacity", wantCode: http.StatusServiceUnavailable, wantBalance: 10_000},
		{mode: "error", wantCode: http.StatusBadGateway, wantBalance: 10_000},
		// The as-is defects: the processor executed, the client is told it
		// failed, and nothing is stored.
		{mode: "garbage", wantCode: http.StatusBadGateway, wantBalance: 10_000, wantExec: 1},
		{mode: "slow", wantCode: http.StatusGatewayTimeout, wantBalance: 10_000, wantExec: 1},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, tc.mode)
			code, body := f.do("POST", "/payment", token(t, 100, false), `{"user_id":100,"amount":-250,"merchant_id":4593}`)
			if code != tc.wantCode {
				t.Fatalf("POST /payment = %d %s, want %d", code, body, tc.wantCode)
			}
			if got := f.balance(100); got != tc.wantBalance {
				t.Errorf("balance = %d, want %d", got, tc.wantBalance)
			}
			if got := len(f.proc.executions()); got != tc.wantExec {
				t.Errorf("processor executions = %d, want %d", got, tc.wantExec)
			}
			if code == http.StatusCreated {
				var p httpapi.PaymentResponse
				if err := json.Unmarshal(body, &p); err != nil {
					t.Fatal(err)
				}
				if p.ID == 0 || p.UserID != 100 || p.Amount != -250 || p.MerchantID != 4593 || p.Status != "succeeded" || p.ProcessorRef != "ref-1" {
					t.Errorf("payment body = %s", body)
				}
				if diff := cmp.Diff([]execution{{UserID: 100, Amount: -250}}, f.proc.executions()); diff != "" {
					t.Errorf("the processor got no merchant and no key, only (-want +got):\n%s", diff)
				}
			} else if !bytes.Contains(body, []byte(`"status":`+itoa(tc.wantCode))) {
				t.Errorf("error body is not a problem document: %s", body)
			}
		})
	}
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func TestCreatePaymentRejects(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "succeed")
	for _, tc := range []struct {
		name string
		tok  string
		body string
		want int
	}{
		{"no token", "", `{"user_id":100,"amount":-1,"merchant_id":4593}`, http.StatusUnauthorized},
		{"bad token", "nope", `{"user_id":100,"amount":-1,"merchant_id":4593}`, http.StatusUnauthorized},
		{"other user", token(t, 101, false), `{"user_id":100,"amount":-1,"merchant_id":4593}`, http.StatusForbidden},
		{"not json", token(t, 100, false), `{`, http.StatusBadRequest},
		{"unknown field", token(t, 100, false), `{"user_id":100,"amount":-1,"merchant_id":4593,"x":1}`, http.StatusBadRequest},
		{"zero amount", token(t, 100, false), `{"user_id":100,"amount":0,"merchant_id":4593}`, http.StatusBadRequest},
		{"no merchant", token(t, 100, false), `{"user_id":100,"amount":-1}`, http.StatusBadRequest},
		{"huge amount", token(t, 100, false), `{"user_id":100,"amount":-1000000000001,"merchant_id":4593}`, http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if code, body := f.do("POST", "/payment", tc.tok, tc.body); code != tc.want {
				t.Errorf("POST /payment = %d %s, want %d", code, body, tc.want)
			}
		})
	}
	// None of them reached the processor.
	t.Cleanup(func() {
		if n := len(f.proc.executions()); n != 0 {
			t.Errorf("processor executions = %d, want 0", n)
		}
	})
}

func TestFeed(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "succeed")
	for _, tc := range []struct {
		name     string
		path     string
		tok      string
		wantCode int
		wantBody string
	}{
		{
			name: "the challenge's example", path: "/payment_feed?user_id=3456", tok: token(t, 3456, false), wantCode: 200,
			wantBody: `{"user_id":3456,"balance":2000,"transactions":[` +
				`{"id":7855,"name":"Apple","amount":-3000,"timestamp":1656487348},` +
				`{"id":7844,"name":"Pleo","amount":5000,"timestamp":1656477038}]}`,
		},
		{name: "admin reads anyone", path: "/payment_feed?user_id=3456", tok: token(t, 1, true), wantCode: 200},
		{name: "unknown user is empty", path: "/payment_feed?user_id=77", tok: token(t, 77, false), wantCode: 200,
			wantBody: `{"user_id":77,"balance":0,"transactions":[]}`},
		{name: "other user", path: "/payment_feed?user_id=3456", tok: token(t, 100, false), wantCode: 403},
		{name: "no token", path: "/payment_feed?user_id=3456", wantCode: 401},
		{name: "no user id", path: "/payment_feed", tok: token(t, 3456, false), wantCode: 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, body := f.do("GET", tc.path, tc.tok, "")
			if code != tc.wantCode {
				t.Fatalf("GET %s = %d %s, want %d", tc.path, code, body, tc.wantCode)
			}
			if tc.wantBody != "" {
				if diff := cmp.Diff(tc.wantBody, strings.TrimSpace(string(body))); diff != "" {
					t.Errorf("body (-want +got):\n%s", diff)
				}
			}
		})
	}
}

func TestPaymentShowsInFeed(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "succeed")
	tok := token(t, 101, false)
	for _, amount := range []string{"-300", "-200"} {
		if code, body := f.do("POST", "/payment", tok, `{"user_id":101,"amount":`+amount+`,"merchant_id":5001}`); code != 201 {
			t.Fatalf("POST /payment = %d %s", code, body)
		}
	}
	code, body := f.do("GET", "/payment_feed?user_id=101", tok, "")
	var fd httpapi.FeedResponse
	if code != 200 || json.Unmarshal(body, &fd) != nil {
		t.Fatalf("feed = %d %s", code, body)
	}
	if fd.Balance != 9_500 || len(fd.Transactions) != 3 || fd.Transactions[0].Amount != -200 || fd.Transactions[0].Name != "Amazon" {
		t.Errorf("feed = %s", body)
	}
}
