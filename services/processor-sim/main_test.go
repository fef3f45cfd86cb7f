package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/finsvc/finance/pkg/testkit"
	"github.com/finsvc/finance/services/processor-sim/internal/sim"
)

func TestLoadConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		env     map[string]string
		check   func(t *testing.T, c config)
		wantErr []string
	}{
		{
			name: "defaults",
			env:  map[string]string{"SIM_SEED": "7"},
			check: func(t *testing.T, c config) {
				want := sim.Settings{
					API: sim.APIProposed, RateLimit: 300, RateBurst: 300,
					LatencyP50: sim.Duration(50 * time.Millisecond), LatencyP99: sim.Duration(250 * time.Millisecond),
				}
				if diff := cmp.Diff(want, c.Sim); diff != "" {
					t.Errorf("settings (-want +got):\n%s", diff)
				}
				if c.HTTPAddr != ":8090" || c.KeyTTL != 72*time.Hour || c.Seed != 7 || !c.SeedSet || c.DataFile != "" {
					t.Errorf("config = %+v", c)
				}
			},
		},
		{
			name: "everything set",
			env: map[string]string{
				"HTTP_ADDR": "127.0.0.1:9999", "SIM_API": "as-is", "SIM_RATE_LIMIT": "50", "SIM_RATE_BURST": "5",
				"SIM_LATENCY_P50": "10ms", "SIM_LATENCY_P99": "20ms", "SIM_DECLINE_RATE": "0.1",
				"SIM_ERROR_RATE": "0.2", "SIM_LOST_RESPONSE_RATE": "0.3", "SIM_KEY_TTL": "24h",
				"SIM_DATA_FILE": "/tmp/x.jsonl",
			},
			check: func(t *testing.T, c config) {
				want := sim.Settings{
					API: sim.APIAsIs, RateLimit: 50, RateBurst: 5,
					LatencyP50: sim.Duration(10 * time.Millisecond), LatencyP99: sim.Duration(20 * time.Millisecond),
					DeclineRate: 0.1, ErrorRate: 0.2, LostResponseRate: 0.3,
				}
				if diff := cmp.Diff(want, c.Sim); diff != "" {
					t.Errorf("settings (-want +got):\n%s", diff)
				}
				if c.HTTPAddr != "127.0.0.1:9999" || c.KeyTTL != 24*time.Hour || c.SeedSet || c.DataFile != "/tmp/x.jsonl" {
					t.Errorf("config = %+v", c)
				}
			},
		},
		{
			name: "every problem at once",
			env: map[string]string{
				"SIM_API": "v3", "SIM_RATE_LIMIT": "0", "SIM_DECLINE_RATE": "2", "SIM_ERROR_RATE": "x",
				"SIM_KEY_TTL": "1h", "SIM_SEED": "-1", "SIM_LATENCY_P50": "fast",
			},
			wantErr: []string{`api "v3"`, "rate_limit 0", "decline_rate 2", `SIM_ERROR_RATE="x"`,
				"SIM_KEY_TTL=1h0m0s", `SIM_SEED="-1"`, `SIM_LATENCY_P50="fast"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := loadConfig(func(k string) string { return tt.env[k] })
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatalf("loadConfig = nil error, want %q", tt.wantErr)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q, want it to mention %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("loadConfig: %v", err)
			}
			tt.check(t, c)
		})
	}
}

// started is a run() in progress.
type started struct {
	url  string
	stop func() error // cancels run and returns its error
}

// start runs the real server through run() on a random port and finds its
// address in the log.
func start(t *testing.T, env map[string]string) started {
	t.Helper()
	srv := testkit.StartServer(t, run, nil, env)
	t.Cleanup(func() {
		if err := srv.Stop(); err != nil {
			t.Errorf("run: %v", err)
		}
	})
	return started{url: "http://" + srv.Addr, stop: srv.Stop}
}

func post(t *testing.T, url, key, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func getJSON(t *testing.T, url string, v any) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if v != nil {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatalf("GET %s: decode: %v", url, err)
		}
	}
	return resp.StatusCode
}

func TestRunServesAndKeepsItsRecordAcrossRestarts(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"HTTP_ADDR": "127.0.0.1:0", "SIM_SEED": "1", "SIM_LATENCY_P50": "0s", "SIM_LATENCY_P99": "0s",
		"SIM_DATA_FILE": filepath.Join(t.TempDir(), "sim.jsonl"), "LOG_LEVEL": "debug",
	}
	const body = `{"user_id":3456,"amount":-3000,"reference":"100001"}`

	s1 := start(t, env)
	for _, p := range []string{"/healthz", "/readyz"} {
		if code := getJSON(t, s1.url+p, nil); code != http.StatusOK {
			t.Errorf("GET %s = %d", p, code)
		}
	}
	if resp := post(t, s1.url+"/v2/payments", "payment-100001", body); resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /v2/payments = %d", resp.StatusCode)
	}
	if resp := post(t, s1.url+"/payment", "", `{"user_id":3456,"amount":500}`); resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /payment = %d", resp.StatusCode)
	}
	var before struct {
		Count      int             `json:"count"`
		Executions []sim.Execution `json:"executions"`
	}
	getJSON(t, s1.url+"/sim/executions?user_id=3456", &before)
	if before.Count != 2 {
		t.Fatalf("executions = %+v, want 2", before)
	}
	if err := s1.stop(); err != nil {
		t.Fatalf("run after SIGTERM-like cancel = %v, want nil", err)
	}

	s2 := start(t, env)
	var after struct {
		Count      int             `json:"count"`
		Executions []sim.Execution `json:"executions"`
	}
	getJSON(t, s2.url+"/sim/executions?user_id=3456", &after)
	if diff := cmp.Diff(before, after); diff != "" {
		t.Errorf("executions after restart (-before +after):\n%s", diff)
	}
	resp := post(t, s2.url+"/v2/payments", "payment-100001", body)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("retry after restart = %d, Idempotent-Replayed %q; want 200 and true",
			resp.StatusCode, resp.Header.Get("Idempotent-Replayed"))
	}
	var stats map[string]any
	getJSON(t, s2.url+"/sim/stats", &stats)
	if stats["replayed"] != 1.0 || stats["executed"] != 0.0 || stats["executions_recorded"] != 2.0 {
		t.Errorf("stats after restart = %v", stats)
	}
}

func TestRunRejectsBadConfig(t *testing.T) {
	t.Parallel()
	err := run(context.Background(), nil, func(k string) string {
		return map[string]string{"SIM_RATE_LIMIT": "-3"}[k]
	}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "rate_limit") {
		t.Fatalf("run = %v, want a config error about rate_limit", err)
	}
}
