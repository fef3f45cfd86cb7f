package obs

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// syncBuffer is a bytes.Buffer safe for the handler's and the test's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestLogLevelRoute: PUT /loglevel on the ops mux changes what the running
// logger (and loggers derived from it, the Kafka one included) writes; GET
// shows it; a bad level is a 400 problem and changes nothing.
func TestLogLevelRoute(t *testing.T) {
	t.Parallel()
	var out syncBuffer
	logger, err := NewLogger(&out, "info", "svc")
	if err != nil {
		t.Fatal(err)
	}
	derived := logger.With("component", "relay")
	kafkaLog := QuietKafka(logger, "info")
	srv := httptest.NewServer(OpsMux(prometheus.NewRegistry(), nil, WithLogLevel(logger)))
	t.Cleanup(srv.Close)

	do := func(method, body string) (int, string, string) {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+"/loglevel", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
	}
	level := func() string {
		t.Helper()
		code, _, body := do(http.MethodGet, "")
		var doc levelDoc
		if code != http.StatusOK || json.Unmarshal([]byte(body), &doc) != nil {
			t.Fatalf("GET /loglevel: %d %s", code, body)
		}
		return doc.Level
	}

	if got := level(); got != "info" {
		t.Fatalf("level at start = %q, want info", got)
	}
	derived.Debug("hidden at info")
	kafkaLog.Info("kafka info hidden")

	for _, tc := range []struct {
		body, want string
	}{
		{`{"level":"debug"}`, "debug"},
		{"WARN\n", "warn"},
		{`{"level":"debug"}`, "debug"},
	} {
		code, _, body := do(http.MethodPut, tc.body)
		if code != http.StatusOK || !strings.Contains(body, `"level":"`+tc.want+`"`) {
			t.Fatalf("PUT %s: %d %s", tc.body, code, body)
		}
		if got := level(); got != tc.want {
			t.Fatalf("after PUT %s level = %q, want %q", tc.body, got, tc.want)
		}
	}
	derived.Debug("shown at debug")
	kafkaLog.Info("kafka info shown")

	for _, bad := range []string{`{"level":"loud"}`, "", "debug2", `{"level":"info","x":1}`, `{"level":`, "warning"} {
		code, ct, body := do(http.MethodPut, bad)
		if code != http.StatusBadRequest || ct != "application/problem+json" || !strings.Contains(body, "bad-log-level") {
			t.Errorf("PUT %q: %d %s %s, want 400 problem+json", bad, code, ct, body)
		}
	}
	if got := level(); got != "debug" {
		t.Errorf("a refused PUT changed the level to %q", got)
	}

	logs := out.String()
	for _, s := range []string{"hidden at info", "kafka info hidden"} {
		if strings.Contains(logs, s) {
			t.Errorf("%q logged before the level was lowered:\n%s", s, logs)
		}
	}
	for _, s := range []string{"shown at debug", "kafka info shown", `"msg":"log level changed","service":"svc","from":"info","to":"debug"`} {
		if !strings.Contains(logs, s) {
			t.Errorf("log lacks %q:\n%s", s, logs)
		}
	}
}

// TestLogLevelRouteNeedsOurLogger: a logger not made by NewLogger has no
// level to change, so the route is not served.
func TestLogLevelRouteNeedsOurLogger(t *testing.T) {
	t.Parallel()
	mux := OpsMux(prometheus.NewRegistry(), nil, WithLogLevel(nil))
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/loglevel", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("GET /loglevel without a level: %d, want 404", rec.Code)
	}
}
