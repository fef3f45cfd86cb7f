// Package apicontract checks HTTP traffic against an OpenAPI document in
// tests: every request a test sends and every answer it gets is validated
// with kin-openapi (openapi3filter), and a route or status the document
// lacks fails the test. Wrap a handler (Handler) or a client's transport
// (RoundTripper); Operations lists what the document describes, for tests
// that compare it with a router's routes.
package apicontract

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// maxBody is how much of a request or response body is kept for
// validation; a longer body is checked only for its status and headers.
const maxBody = 1 << 20

var registerOnce sync.Once

// Contract is one loaded and validated OpenAPI document.
type Contract struct {
	doc    *openapi3.T
	router routers.Router
}

// RepoFile is the absolute path of name relative to the repository root
// (the directory holding go.work), found from this source file's place.
func RepoFile(name string) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", name)
}

// Load reads the OpenAPI document at path, validates it, and fails tb if it
// is not a valid document.
func Load(tb testing.TB, path string) *Contract {
	tb.Helper()
	c, err := LoadFile(path)
	if err != nil {
		tb.Fatalf("apicontract: %v", err)
	}
	return c
}

// LoadFile is Load for callers without a testing.TB (a package's shared,
// once-loaded contract).
func LoadFile(path string) (*Contract, error) {
	registerOnce.Do(func() {
		// Server-sent events are text; their body is checked as a string.
		openapi3filter.RegisterBodyDecoder("text/event-stream", openapi3filter.PlainBodyDecoder)
	})
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(data)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		return nil, fmt.Errorf("%s is not a valid OpenAPI document: %w", path, err)
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("router of %s: %w", path, err)
	}
	return &Contract{doc: doc, router: router}, nil
}

// Version is the document's openapi field.
func (c *Contract) Version() string { return c.doc.OpenAPI }

// Operations lists the document's operations as "METHOD /path/{param}",
// sorted.
func (c *Contract) Operations() []string {
	var ops []string
	for path, item := range c.doc.Paths.Map() {
		for method := range item.Operations() {
			ops = append(ops, method+" "+path)
		}
	}
	sort.Strings(ops)
	return ops
}

// Statuses lists the statuses the document gives op ("GET /path"), sorted.
func (c *Contract) Statuses(op string) []string {
	method, path, _ := strings.Cut(op, " ")
	item := c.doc.Paths.Find(path)
	if item == nil || item.GetOperation(method) == nil {
		return nil
	}
	var s []string
	for code := range item.GetOperation(method).Responses.Map() {
		s = append(s, code)
	}
	sort.Strings(s)
	return s
}

// Exchange is one request and its answer, as a test saw them.
type Exchange struct {
	Request *http.Request
	// Body is the request's body (at most maxBody bytes; BodyCut says more
	// was sent).
	Body    []byte
	BodyCut bool

	Status      int
	Header      http.Header
	Response    []byte
	ResponseCut bool
	// Hijacked says the handler took the connection (http.Hijacker) and
	// wrote its answer itself, out of the wrapper's sight: only the request
	// is checked, as one that was served. Check such answers on the client
	// side (RoundTripper).
	Hijacked bool
}

// Check validates one exchange and returns every way it breaks the
// contract, nil when it keeps it:
//   - a request of a route the document lacks, or one it refuses, must get
//     a 4xx or 5xx answer (bad input is answered, never served);
//   - an answer to a route of the document must have a status the
//     operation lists (no "default" is written, so a missing status fails),
//     and its headers and body must match that status's description.
func (c *Contract) Check(ctx context.Context, x Exchange) error {
	r := x.Request.Clone(ctx)
	r.Body = io.NopCloser(bytes.NewReader(x.Body))
	r.ContentLength = int64(len(x.Body))
	route, params, err := c.router.FindRoute(r)
	if err != nil {
		if x.Status < 400 {
			return fmt.Errorf("%s %s is not in the document (%v) but was answered %d", r.Method, r.URL.Path, err, x.Status)
		}
		return nil
	}
	opts := &openapi3filter.Options{
		AuthenticationFunc:    openapi3filter.NoopAuthenticationFunc,
		IncludeResponseStatus: true,
		MultiError:            true,
	}
	in := &openapi3filter.RequestValidationInput{Request: r, PathParams: params, Route: route, Options: opts}
	if x.BodyCut {
		opts.ExcludeRequestBody = true
	}
	var errs []error
	if err := openapi3filter.ValidateRequest(ctx, in); err != nil && x.Status < 400 {
		errs = append(errs, fmt.Errorf("the document refuses the request but it was answered %d: %w", x.Status, err))
	}
	if x.Hijacked {
		if len(errs) > 0 {
			return fmt.Errorf("%s %s (operation %s %s, hijacked): %w", r.Method, r.URL.RequestURI(), r.Method, route.Path, errors.Join(errs...))
		}
		return nil
	}
	respOpts := *opts
	mt, _, _ := mime.ParseMediaType(x.Header.Get("Content-Type"))
	if x.ResponseCut || mt == "text/event-stream" {
		respOpts.ExcludeResponseBody = true
	}
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: r, PathParams: params, Route: route, Options: &respOpts},
		Status:                 x.Status,
		Header:                 x.Header,
		Options:                &respOpts,
	}
	out.SetBodyBytes(x.Response)
	if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
		errs = append(errs, fmt.Errorf("answer %d: %w", x.Status, err))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s %s (operation %s %s): %w", r.Method, r.URL.RequestURI(), r.Method, route.Path, errors.Join(errs...))
	}
	return nil
}

// Handler wraps h so that every request it serves and every answer it
// gives is checked (Check); a broken contract fails tb. Streaming answers
// pass through (Flush, and Unwrap for http.ResponseController) and are
// checked when the handler returns.
func (c *Contract) Handler(tb testing.TB, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, cut := readBody(r)
		x := Exchange{Request: r.Clone(context.WithoutCancel(r.Context())), Body: body, BodyCut: cut}
		rw := &recorder{ResponseWriter: w}
		h.ServeHTTP(rw, r)
		if rw.hijacked {
			x.Status, x.Hijacked = http.StatusOK, true
		} else if rw.status == 0 {
			rw.status = http.StatusOK
			rw.header = w.Header().Clone()
		}
		x.Status, x.Header, x.Response, x.ResponseCut = rw.status, rw.header, rw.body.Bytes(), rw.cut
		if err := c.Check(context.Background(), x); err != nil {
			tb.Errorf("apicontract: %v", err)
		}
	})
}

// RoundTripper wraps rt (nil: http.DefaultTransport) so that every request
// a client sends through it and every answer it reads are checked (Check).
// The answer's body is read whole (at most maxBody bytes are checked) and
// handed on unchanged; a long poll is therefore checked when its answer
// comes. A stream of server-sent events (text/event-stream) lasts as long
// as the client reads it: its status and headers are checked when they
// arrive and its body is handed on unread.
func (c *Contract) RoundTripper(tb testing.TB, rt http.RoundTripper) http.RoundTripper {
	if rt == nil {
		rt = http.DefaultTransport
	}
	return roundTripper(func(r *http.Request) (*http.Response, error) {
		body, cut := readBody(r)
		x := Exchange{Request: r, Body: body, BodyCut: cut}
		resp, err := rt.RoundTrip(r)
		if err != nil {
			return resp, err
		}
		if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt == "text/event-stream" {
			x.Status, x.Header = resp.StatusCode, resp.Header
			if err := c.Check(context.Background(), x); err != nil {
				tb.Errorf("apicontract: %v", err)
			}
			return resp, nil
		}
		full, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(full))
		if err != nil {
			return resp, nil // the client sees the short body; nothing to check
		}
		x.Status, x.Header, x.Response = resp.StatusCode, resp.Header, full
		if len(full) > maxBody {
			x.Response, x.ResponseCut = full[:maxBody], true
		}
		if err := c.Check(context.Background(), x); err != nil {
			tb.Errorf("apicontract: %v", err)
		}
		return resp, nil
	})
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// readBody reads r's body (at most maxBody bytes kept for the check) and
// puts an identical one back.
func readBody(r *http.Request) ([]byte, bool) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, false
	}
	data, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	rest := r.Body
	r.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(data), errReader{err}, rest), rest}
	if len(data) > maxBody {
		return data[:maxBody], true
	}
	return data, err != nil
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	return 0, io.EOF
}

// recorder passes an answer through and keeps its status, headers and the
// first maxBody bytes of its body.
type recorder struct {
	http.ResponseWriter
	status   int
	header   http.Header
	body     bytes.Buffer
	cut      bool
	hijacked bool
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 && code >= 200 {
		r.status = code
		r.header = r.ResponseWriter.Header().Clone()
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.WriteHeader(http.StatusOK)
	}
	room := maxBody - r.body.Len()
	if len(p) > room {
		r.cut = true
	}
	if room > 0 {
		r.body.Write(p[:min(room, len(p))])
	}
	return r.ResponseWriter.Write(p)
}

// Flush keeps streams streaming.
func (r *recorder) Flush() {
	if r.status == 0 {
		r.WriteHeader(http.StatusOK)
	}
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Hijack hands the connection to a handler that writes its answer itself
// (the gateway's parked long-polls and streams); the exchange is then
// checked as Exchange.Hijacked says.
func (r *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(r.ResponseWriter).Hijack()
	if err == nil {
		r.hijacked = true
	}
	return conn, brw, err
}

// Unwrap lets http.ResponseController reach the connection (deadlines).
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
