package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/finsvc/finance/pkg/pgtest"
	"github.com/finsvc/finance/pkg/stacktest"
	"github.com/finsvc/finance/pkg/testkit"
)

// TestOpsPortChangesTheLogLevel runs the whole gateway with OPS_ADDR and
// changes its log level at runtime there, as an operator would: the
// public /healthz is logged at debug, so it is not logged at info, and is
// once PUT /loglevel set debug. The ops port also serves /metrics (the
// gateway's own series), /readyz and pprof; the public port keeps its
// /metrics and does not serve /loglevel.
func TestOpsPortChangesTheLogLevel(t *testing.T) {
	t.Parallel()
	httpAddr, opsAddr := stacktest.FreeAddr(t), stacktest.FreeAddr(t)
	env := map[string]string{
		"DATABASE_URL":     pgtest.NewDB(t),
		"HTTP_ADDR":        httpAddr,
		"OPS_ADDR":         opsAddr,
		"FINANCE_DEV_MODE": "true",
		"LOG_LEVEL":        "info",
		"LOG_READ_SAMPLE":  "1",
		// Every refusal's line too, however fast the test sends them.
		"LOG_REFUSALS_PER_SECOND": "0",
	}
	out := &lockedBuffer{}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, getenv(env), out, out) }()
	t.Cleanup(func() {
		stop()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run: %v", err)
			}
		case <-time.After(testkit.DefaultWait):
			t.Errorf("run did not return after its context ended")
		}
		if t.Failed() {
			t.Logf("gateway log:\n%s", out.String())
		}
	})
	pub, ops := "http://"+httpAddr, "http://"+opsAddr
	testkit.Eventually(t, "both ports answer", func() bool {
		return status(pub+"/readyz") == http.StatusOK && status(ops+"/readyz") == http.StatusOK
	})

	if got := level(t, http.MethodGet, ops+"/loglevel", ""); got != "info" {
		t.Fatalf("GET /loglevel = %q, want info (LOG_LEVEL)", got)
	}
	if status(pub+"/healthz") != http.StatusOK {
		t.Fatal("public /healthz is not 200")
	}
	// At info the debug line of /healthz is not written. The request's
	// line is written once the answer is sent, so wait for a later line
	// (the next request's at info: a 401) before looking.
	if status(pub+"/v1/users/1/feed") != http.StatusUnauthorized {
		t.Fatal("the feed without a token is not 401")
	}
	testkit.Eventually(t, "the 401 is logged", func() bool { return strings.Contains(out.String(), `"status":401`) })
	if healthzLogged(out.String()) {
		t.Fatal("/healthz was logged at info; the check below would prove nothing")
	}

	if got := level(t, http.MethodPut, ops+"/loglevel", `{"level":"debug"}`); got != "debug" {
		t.Fatalf("PUT /loglevel debug answered %q", got)
	}
	if got := level(t, http.MethodGet, ops+"/loglevel", ""); got != "debug" {
		t.Fatalf("GET /loglevel after PUT = %q, want debug", got)
	}
	if status(pub+"/healthz") != http.StatusOK {
		t.Fatal("public /healthz is not 200")
	}
	testkit.Eventually(t, "/healthz is logged at debug", func() bool { return healthzLogged(out.String()) })
	if !strings.Contains(out.String(), `"msg":"log level changed"`) {
		t.Error(`the change was not logged ("log level changed")`)
	}

	for _, u := range []string{ops + "/metrics", pub + "/metrics"} {
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "gateway_accept_batch_size") {
			t.Errorf("%s: %d, without the gateway's series", u, resp.StatusCode)
		}
	}
	if code := status(ops + "/debug/pprof/"); code != http.StatusOK {
		t.Errorf("ops /debug/pprof/ = %d, want 200", code)
	}
	if code := status(pub + "/loglevel"); code != http.StatusNotFound {
		t.Errorf("public /loglevel = %d, want 404: the level is changed on the ops port only", code)
	}
}

// TestOpsAddrIsChecked: a bad OPS_ADDR stops the gateway at start.
func TestOpsAddrIsChecked(t *testing.T) {
	t.Parallel()
	_, err := loadConfig(getenv(map[string]string{"FINANCE_DEV_MODE": "true", "OPS_ADDR": "9105"}))
	if err == nil || !strings.Contains(err.Error(), "OPS_ADDR") {
		t.Errorf("loadConfig with OPS_ADDR=9105: %v, want an OPS_ADDR error", err)
	}
	c, err := loadConfig(getenv(map[string]string{"FINANCE_DEV_MODE": "true"}))
	if err != nil || c.Ops.Addr != "" {
		t.Errorf("without OPS_ADDR: addr %q, %v; want no ops port", c.Ops.Addr, err)
	}
}

// status is the status code of GET u, 0 when it fails.
func status(u string) int {
	resp, err := http.Get(u)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// level sends a /loglevel request and returns the level it answers.
func level(t *testing.T, method, u, body string) string {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc struct {
		Level string `json:"level"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&doc) != nil {
		t.Fatalf("%s %s: %d", method, u, resp.StatusCode)
	}
	return doc.Level
}

// healthzLogged reports whether log holds a request line of /healthz.
func healthzLogged(log string) bool {
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, `"route":"/healthz"`) && strings.Contains(line, `"level":"DEBUG"`) {
			return true
		}
	}
	return false
}
