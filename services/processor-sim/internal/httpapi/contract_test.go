package httpapi_test

import (
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/finsvc/finance/pkg/apicontract"
)

// processorContract is docs/processor-openapi.yaml, loaded once.
var processorContract = sync.OnceValues(func() (*apicontract.Contract, error) {
	return apicontract.LoadFile(apicontract.RepoFile("docs/processor-openapi.yaml"))
})

// checked wraps the tests' transport so that every request they send the
// simulator and every answer they read are validated against
// docs/processor-openapi.yaml: a route or status the document lacks, or
// an answer off its schema, fails t. A dropped response (an injected lost
// response) is an error of the transport and checks nothing.
func checked(t testing.TB, rt http.RoundTripper) http.RoundTripper {
	t.Helper()
	c, err := processorContract()
	if err != nil {
		t.Fatalf("docs/processor-openapi.yaml: %v", err)
	}
	return c.RoundTripper(t, rt)
}

// TestContractOperationsServed: the document is OpenAPI 3.1 and every
// operation in it is a route of the simulator (a request to it is not
// answered with the mux's 404 or 405). ServeMux cannot list its routes, so
// the other direction rests on the routes' own tests, each of which is
// checked against the document.
func TestContractOperationsServed(t *testing.T) {
	t.Parallel()
	c, err := processorContract()
	if err != nil {
		t.Fatal(err)
	}
	if v := c.Version(); v != "3.1.0" {
		t.Errorf("openapi = %q, want 3.1.0", v)
	}
	fx := newFixture(t, "", nil)
	for _, op := range c.Operations() {
		method, path, _ := strings.Cut(op, " ")
		path = strings.ReplaceAll(path, "{key}", "no-such-key")
		req, err := http.NewRequest(method, fx.url+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode == http.StatusMethodNotAllowed || (resp.StatusCode == http.StatusNotFound && resp.Header.Get("Content-Type") == "text/plain; charset=utf-8") {
			t.Errorf("%s: answered %d, not a route of the simulator", op, resp.StatusCode)
		}
	}
}
