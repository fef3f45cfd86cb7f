package simclient_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/finsvc/finance/pkg/payment"
	"github.com/finsvc/finance/pkg/simclient"
)

// record is a GET /sim/executions body with fields around the list, which
// the decoder must skip.
func record(key string) string {
	return `{"count":3,"executions":[
		{"seq":1,"id":"pay_1","idempotency_key":"` + key + `","user_id":10,"amount":-3000,"reference":"1002","api":"proposed","executed_at":"2026-11-25T14:10:36Z"},
		{"seq":2,"id":"pay_2","idempotency_key":"","user_id":20,"amount":-1000,"api":"as-is","executed_at":"2026-11-25T14:10:37Z"},
		{"seq":3,"id":"pay_3","idempotency_key":"payment-100001","user_id":30,"amount":-5,"api":"proposed","executed_at":"2026-11-25T14:10:38Z"}],
		"next":{"ignored":[1,2]}}`
}

// fakeSim serves the /sim routes the client reads and records what it was
// sent.
func fakeSim(t *testing.T, key string) (*simclient.Client, *[]string) {
	t.Helper()
	var got []string
	mux := http.NewServeMux()
	mux.HandleFunc("GET /sim/executions", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, record(key)) })
	mux.HandleFunc("GET /sim/stats", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, `{"calls":7,"executed":3,"declined":1,"executions_recorded":3}`)
	})
	mux.HandleFunc("PUT /sim/config", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got = append(got, r.Method+" "+r.URL.Path+" "+string(b))
		_, _ = io.WriteString(w, `{}`)
	})
	mux.HandleFunc("POST /sim/outage", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got = append(got, r.Method+" "+r.URL.Path+" "+string(b))
		_, _ = io.WriteString(w, `{"active":true}`)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return simclient.New(srv.URL + "/"), &got
}

func TestExecutionsAfter(t *testing.T) {
	t.Parallel()
	uid := payment.NewUID()
	c, _ := fakeSim(t, payment.ProcessorKey(uid))
	got, err := c.ExecutionsAfter(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	want := []simclient.Execution{
		{Seq: 2, ID: "pay_2", UserID: 20, Amount: -1000, API: "as-is", ExecutedAt: time.Date(2026, 11, 25, 14, 10, 37, 0, time.UTC)},
		{Seq: 3, ID: "pay_3", IdempotencyKey: "payment-100001", UserID: 30, Amount: -5, API: "proposed", ExecutedAt: time.Date(2026, 11, 25, 14, 10, 38, 0, time.UTC)},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ExecutionsAfter(1) (-want +got):\n%s", diff)
	}

	all, err := c.ExecutionsAfter(context.Background(), 0)
	if err != nil || len(all) != 3 {
		t.Fatalf("ExecutionsAfter(0) = %d executions, %v; want 3", len(all), err)
	}
	// Only a key ProcessorKey made names a payment.
	for i, want := range []bool{true, false, false} {
		u, ok := all[i].PaymentUID()
		if ok != want || (ok && u != uid) {
			t.Errorf("execution %d (key %q): PaymentUID = %v, %v; want %v", i+1, all[i].IdempotencyKey, u, ok, want)
		}
	}
}

func TestDecodeExecutionsStopsWhenAsked(t *testing.T) {
	t.Parallel()
	var seqs []int64
	err := simclient.DecodeExecutions(strings.NewReader(record("")), func(e simclient.Execution) bool {
		seqs = append(seqs, e.Seq)
		return len(seqs) < 2
	})
	if err != nil || !cmp.Equal(seqs, []int64{1, 2}) {
		t.Errorf("DecodeExecutions = %v, %v; want [1 2] and no error", seqs, err)
	}
	for _, body := range []string{`[]`, `{"executions":{}}`, `{"executions":[{"seq":"one"}]}`, `{"executions":[`} {
		if err := simclient.DecodeExecutions(strings.NewReader(body), func(simclient.Execution) bool { return true }); err == nil {
			t.Errorf("DecodeExecutions(%s): no error", body)
		}
	}
}

func TestReadExecutionsFailsOnAnError(t *testing.T) {
	t.Parallel()
	c, _ := fakeSim(t, "")
	var n int
	var last error
	for _, err := range simclient.ReadExecutions(context.Background(), nil, c.URL()+"/nope") {
		n++
		last = err
	}
	if n != 1 || last == nil || !strings.Contains(last.Error(), "HTTP 404") {
		t.Errorf("ReadExecutions of a 404: %d items, last error %v; want one error naming HTTP 404", n, last)
	}
}

func TestControl(t *testing.T) {
	t.Parallel()
	c, sent := fakeSim(t, "")
	ctx := context.Background()
	st, err := c.Stats(ctx)
	if err != nil || st.Calls != 7 || st.ExecutionsRecorded != 3 {
		t.Errorf("Stats = %+v, %v", st, err)
	}
	if err := c.UpdateSettings(ctx, map[string]any{"latency_p50": "0s"}); err != nil {
		t.Error(err)
	}
	if err := c.StartOutage(ctx, time.Minute); err != nil {
		t.Error(err)
	}
	if _, err := c.Settings(ctx); err == nil || !strings.Contains(err.Error(), "answered 405") {
		t.Errorf("Settings of a simulator without GET /sim/config: %v, want an error naming 405", err)
	}
	want := []string{`PUT /sim/config {"latency_p50":"0s"}`, `POST /sim/outage {"duration":"1m0s"}`}
	if diff := cmp.Diff(want, *sent); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
}
