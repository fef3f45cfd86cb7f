package main_test

// The gateway's public API as the end-to-end tests speak it: every request
// they send to it and every answer they read goes through apicontract's
// checking transport, which validates both against docs/openapi.yaml with
// kin-openapi. A route or status the document lacks, or a header or body
// off its schema, fails the test that met it, as the gateway's own
// httpapi tests fail on the handler (their checked helper).

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/finsvc/finance/pkg/apicontract"
)

// gatewayContract is docs/openapi.yaml, loaded once for the package.
var gatewayContract = sync.OnceValues(func() (*apicontract.Contract, error) {
	return apicontract.LoadFile(apicontract.RepoFile("docs/openapi.yaml"))
})

// apiClient returns a client for the gateway's public API whose every
// exchange is checked against docs/openapi.yaml; a broken contract fails
// tb. A long poll is checked when its answer comes; a stream of
// server-sent events by its status and headers, its body handed on unread
// (timeout 0 for a stream: a client's timeout covers reading the body).
//
// Only the public API goes through it. What the document does not
// describe uses plain clients, on purpose: the ops ports (/loglevel and
// the services' /metrics), the processor simulator (docs/processor-openapi.yaml,
// checked by its own tests), the console's HTML pages (/console) and the
// webhook deliveries the tests receive.
func apiClient(tb testing.TB, timeout time.Duration) *http.Client {
	tb.Helper()
	c, err := gatewayContract()
	if err != nil {
		tb.Fatalf("docs/openapi.yaml: %v", err)
	}
	return &http.Client{Timeout: timeout, Transport: c.RoundTripper(tb, nil)}
}
