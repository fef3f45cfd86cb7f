package httpapi_test

import (
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"sync"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/google/go-cmp/cmp"

	"github.com/finsvc/finance/pkg/apicontract"
	"github.com/finsvc/finance/pkg/auth"
	"github.com/finsvc/finance/pkg/obs"
	"github.com/finsvc/finance/services/gateway/internal/httpapi"
)

// gatewayContract is docs/openapi.yaml, loaded once for the package.
var gatewayContract = sync.OnceValues(func() (*apicontract.Contract, error) {
	return apicontract.LoadFile(apicontract.RepoFile("docs/openapi.yaml"))
})

// checked wraps a gateway handler so that every request a test sends it and
// every answer it gives are validated against docs/openapi.yaml: a route or
// status the document lacks, or an answer off its schema, fails t.
func checked(t testing.TB, h http.Handler) http.Handler {
	t.Helper()
	c, err := gatewayContract()
	if err != nil {
		t.Fatalf("docs/openapi.yaml: %v", err)
	}
	return c.Handler(t, h)
}

// ginRoutes lists the gateway's routes as OpenAPI operations
// ("GET /v1/payments/{id}"), from gin's own route table.
func ginRoutes(t testing.TB, h http.Handler) []string {
	t.Helper()
	e, ok := h.(*gin.Engine)
	if !ok {
		t.Fatalf("httpapi.New returned %T, not the gin engine", h)
	}
	param := regexp.MustCompile(`[:*]([A-Za-z_]+)`)
	var ops []string
	for _, r := range e.Routes() {
		ops = append(ops, r.Method+" "+param.ReplaceAllString(r.Path, "{$1}"))
	}
	return ops
}

// TestContractCoversRoutes: every gin route is an operation of
// docs/openapi.yaml and every operation there is a gin route, and the
// document is OpenAPI 3.1.
func TestContractCoversRoutes(t *testing.T) {
	t.Parallel()
	c, err := gatewayContract()
	if err != nil {
		t.Fatal(err)
	}
	if v := c.Version(); v != "3.1.0" {
		t.Errorf("openapi = %q, want 3.1.0", v)
	}
	// The route table needs no database: the handler is never called.
	h := httpapi.New(httpapi.Config{Logger: slog.New(slog.DiscardHandler), Verifier: auth.NewVerifier(testSecret), Registry: obs.NewRegistry()})
	got := sortedSet(ginRoutes(t, h))
	want := sortedSet(c.Operations())
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("operations of docs/openapi.yaml (-) vs gin routes (+):\n%s", diff)
	}
}

func sortedSet(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return slices.Compact(s)
}
