package apicontract_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/finsvc/finance/pkg/apicontract"
)

const doc = `openapi: 3.1.0
info: {title: t, version: "1"}
paths:
  /things/{id}:
    get:
      parameters:
        - {name: id, in: path, required: true, schema: {type: integer, minimum: 1}}
      responses:
        "200":
          description: the thing
          headers:
            ETag: {required: true, schema: {type: string}}
          content:
            application/json:
              schema:
                type: object
                required: [id]
                additionalProperties: false
                properties: {id: {type: integer}}
        "400":
          description: bad id
          content:
            application/problem+json:
              schema: {type: object, required: [status], properties: {status: {type: integer}}}
  /things/{id}/events:
    get:
      parameters:
        - {name: id, in: path, required: true, schema: {type: integer, minimum: 1}}
      responses:
        "200":
          description: the thing's events
          content:
            text/event-stream:
              schema: {type: string}
`

func load(t *testing.T) *apicontract.Contract {
	t.Helper()
	p := filepath.Join(t.TempDir(), "openapi.yaml")
	if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return apicontract.Load(t, p)
}

// TestCheck: each way an exchange can break the contract is caught, and a
// kept one passes, so the suites that rely on Check cannot pass vacuously.
func TestCheck(t *testing.T) {
	t.Parallel()
	c := load(t)
	if got := strings.Join(c.Operations(), ","); got != "GET /things/{id},GET /things/{id}/events" {
		t.Errorf("Operations = %s", got)
	}
	json := http.Header{"Content-Type": {"application/json"}, "Etag": {`"1"`}}
	problem := http.Header{"Content-Type": {"application/problem+json"}}
	tests := []struct {
		name, method, path string
		status             int
		header             http.Header
		body, wantErr      string
	}{
		{"kept", "GET", "/things/1", 200, json, `{"id":1}`, ""},
		{"refused request answered 400", "GET", "/things/x", 400, problem, `{"status":400}`, ""},
		{"undocumented route answered 404", "GET", "/nowhere", 404, problem, `{}`, ""},
		{"undocumented route served", "GET", "/nowhere", 200, json, `{}`, "not in the document"},
		{"refused request served", "GET", "/things/0", 200, json, `{"id":0}`, "refuses the request"},
		{"undocumented status", "GET", "/things/1", 404, problem, `{"status":404}`, "404"},
		{"body off schema", "GET", "/things/1", 200, json, `{"id":1,"extra":2}`, "extra"},
		{"missing header", "GET", "/things/1", 200, http.Header{"Content-Type": {"application/json"}}, `{"id":1}`, "ETag"},
		{"wrong media type", "GET", "/things/1", 400, json, `{"status":400}`, "application/json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := c.Check(context.Background(), apicontract.Exchange{
				Request: httptest.NewRequest(tt.method, tt.path, nil),
				Status:  tt.status, Header: tt.header, Response: []byte(tt.body),
			})
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("Check: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("Check = %v, want an error saying %q", err, tt.wantErr)
			}
		})
	}
}

// TestHandlerPassesThrough: the wrapped handler's answer reaches the
// client unchanged.
func TestHandlerPassesThrough(t *testing.T) {
	t.Parallel()
	c := load(t)
	h := c.Handler(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("ETag", `"1"`)
		_, _ = w.Write([]byte(`{"id":1}`))
	}))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/things/1", nil))
	if w.Code != 200 || w.Body.String() != `{"id":1}` || w.Header().Get("ETag") != `"1"` {
		t.Errorf("got %d %v %s", w.Code, w.Header(), w.Body)
	}
}

// TestHandlerHijack: a handler that takes the connection and answers on
// it itself gets the connection through the wrapper, and its request is
// still checked (a refused request answered by a hijacker fails).
func TestHandlerHijack(t *testing.T) {
	t.Parallel()
	c := load(t)
	for _, tc := range []struct {
		path    string
		wantErr bool
	}{{"/things/1", false}, {"/things/abc", true}} {
		rec := &recordTB{TB: t}
		checked := c.Handler(rec, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			conn, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Errorf("hijack: %v", err)
				return
			}
			_, _ = brw.WriteString("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{\"id\":1}")
			_ = brw.Flush()
			_ = conn.Close()
		}))
		// The check runs after the handler returns, which may be after
		// the client has its answer, and the server's Close does not wait
		// for a hijacked connection's handler: wait for it here.
		done := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			defer close(done)
			checked.ServeHTTP(w, r)
		}))
		resp, err := http.Get(srv.URL + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		<-done
		srv.Close()
		if string(body) != `{"id":1}` {
			t.Errorf("%s: body %q", tc.path, body)
		}
		if got := rec.failed(); got != tc.wantErr {
			t.Errorf("%s: check failed = %v, want %v (%v)", tc.path, got, tc.wantErr, rec.msgs)
		}
	}
}

// TestRoundTripperStreams: a stream of server-sent events reaches the
// client through the RoundTripper while it is open (an event the server
// writes after the answer arrived is read too), and its status and
// headers are checked: on a route of the document it passes, on one the
// document lacks it fails.
func TestRoundTripperStreams(t *testing.T) {
	t.Parallel()
	c := load(t)
	next := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "id: 1\n\n")
		_ = rc.Flush()
		select {
		case <-next:
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(w, "id: 2\n\n")
		_ = rc.Flush()
		<-r.Context().Done()
	}))
	defer srv.Close()
	for _, tc := range []struct {
		path    string
		wantErr bool
	}{{"/things/1/events", false}, {"/nowhere", true}} {
		rec := &recordTB{TB: t}
		// The timeout only ends a client that waits for the stream's end.
		client := &http.Client{Timeout: time.Minute, Transport: c.RoundTripper(rec, nil)}
		resp, err := client.Get(srv.URL + tc.path)
		if err != nil {
			t.Fatalf("%s: %v", tc.path, err)
		}
		next <- struct{}{} // the second event is written only now
		const want = "id: 1\n\nid: 2\n\n"
		got := make([]byte, len(want))
		_, err = io.ReadFull(resp.Body, got)
		resp.Body.Close()
		if err != nil || string(got) != want {
			t.Errorf("%s: read %q, %v; want both events, the second written after the answer arrived", tc.path, got, err)
		}
		if got := rec.failed(); got != tc.wantErr {
			t.Errorf("%s: check failed = %v, want %v (%v)", tc.path, got, tc.wantErr, rec.msgs)
		}
	}
}

// recordTB keeps the errors reported to it instead of failing the test.
type recordTB struct {
	testing.TB
	mu   sync.Mutex
	msgs []string
}

func (r *recordTB) Helper() {}

func (r *recordTB) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, fmt.Sprintf(format, args...))
}

func (r *recordTB) failed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.msgs) > 0
}
