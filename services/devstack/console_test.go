package main_test

// The operator console's "resolve from processor" as `make run` configures
// the gateway: the gateway connects as finance_gateway, which may not
// settle a payment, so the resolution must go through the connection
// devstack gives it for that (GATEWAY_RECONCILE_DATABASE_URL).

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/finsvc/finance/pkg/auth"
	"github.com/finsvc/finance/pkg/payment"
	"github.com/finsvc/finance/pkg/pgtest"
	"github.com/finsvc/finance/pkg/testkit"
)

// consoleCookie is the console's session cookie (the gateway's
// console.CookieName, internal to its module): the operator's admin token.
const consoleCookie = "finance_console"

// An unknown payment, executed at the processor but its replies lost, is
// resolved from the console and ends succeeded, settled once, and
// financectl verify is clean. Without a reconcile URL of its own the
// gateway's resolution fails on finance_gateway's grants (502, "permission
// denied for table entries": checked once with devstack's
// GATEWAY_RECONCILE_DATABASE_URL taken out).
func TestConsoleResolvesAnUnknownPaymentUnderDevstack(t *testing.T) {
	// Not parallel: each of these tests runs a whole stack.
	r := newRestoreRig(t)
	dbURL := pgtest.NewDB(t)
	// As the replay test: three attempts, and the budget, not the circuit
	// breaker, decides, so that lost replies make an unknown payment.
	r.start(dbURL, "PROCESSOR_MAX_ATTEMPTS=3", "PROCESSOR_BREAKER_FAILURES=1000000")

	// The periodic reconciler (financectl reconcile --watch 30s) would
	// resolve the payment too, from the same evidence; paused, it leaves
	// it to the console, so that the console's connection is what settles.
	reconciler := r.st.Pid("financectl")
	if reconciler == 0 {
		t.Fatal("the reconciler is not running")
	}
	resume := func() { _ = syscall.Kill(reconciler, syscall.SIGCONT) }
	t.Cleanup(resume) // before the rig's stop, which must find it running
	if err := syscall.Kill(reconciler, syscall.SIGSTOP); err != nil {
		t.Fatalf("pause the reconciler: %v", err)
	}

	// Executed (never declined), every reply lost.
	r.simConfig(`{"lost_response_rate":1,"decline_rate":0}`)
	p := r.pay(1)[0]
	testkit.EventuallyWithin(t, 2*time.Minute, "the payment whose replies were lost is unknown", func() bool {
		return statuses(t, dbURL, []string{p.UID})[p.UID] == payment.StatusUnknown
	})
	r.simConfig(`{"lost_response_rate":0}`)

	admin, err := auth.Mint([]byte(auth.DevSecret), 1, true, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	status, body := consoleRequest(t, r.st.GatewayURL, admin, "/console/unknown", nil)
	if status != http.StatusOK || !strings.Contains(body, fmt.Sprint(p.ID)) || !strings.Contains(body, "Resolve from processor") {
		t.Fatalf("GET /console/unknown: %d, want 200 listing payment %d with its resolve button:\n%s", status, p.ID, body)
	}
	status, body = consoleRequest(t, r.st.GatewayURL, admin, fmt.Sprintf("/console/unknown/%d/resolve", p.ID), url.Values{})
	if status != http.StatusOK || !strings.Contains(body, "resolved: unknown → succeeded") {
		t.Fatalf("resolve payment %d: %d, want 200 \"resolved: unknown → succeeded\":\n%s", p.ID, status, body)
	}
	resume()

	if got := statuses(t, dbURL, []string{p.UID})[p.UID]; got != payment.StatusSucceeded {
		t.Errorf("payment %d is %s after the console resolved it, want succeeded", p.ID, got)
	}
	var transitions, audited int64
	eachRow(t, dbURL, []any{&transitions, &audited}, func() {},
		`SELECT (SELECT count(*) FROM payment_transitions WHERE payment_id = $1 AND to_status = 'succeeded' AND actor = 'reconciler'),
		        (SELECT count(*) FROM admin_audit WHERE target = $2 AND status = 200)`, p.ID, fmt.Sprintf("id=%d", p.ID))
	if transitions != 1 || audited != 1 {
		t.Errorf("payment %d: %d reconciler transitions to succeeded and %d audited resolves; want 1 and 1", p.ID, transitions, audited)
	}
	// Settled once, as the processor executed it: balance, hold, entry.
	r.verifyClean()
}

// consoleRequest sends one console request as the console's own pages do:
// the session cookie, and for a form (a POST) the same-origin headers
// that the gateway's CSRF check wants. It returns the status and the page.
func consoleRequest(t *testing.T, gateway, token, path string, form url.Values) (int, string) {
	t.Helper()
	method, body := http.MethodGet, io.Reader(nil)
	if form != nil {
		method, body = http.MethodPost, strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, gateway+path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.AddCookie(&http.Cookie{Name: consoleCookie, Value: token})
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		req.Header.Set("Origin", gateway)
	}
	// A plain client, not apiClient: the console's pages are HTML, not the
	// API, and docs/openapi.yaml leaves them out.
	resp, err := (&http.Client{Timeout: time.Minute}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
