package main_test

// The end-to-end test: it builds (or takes from FINANCE_BIN_DIR) the real
// binaries, starts the whole pipeline with `devstack run` as separate
// processes on free ports, and drives a payment over HTTP like a user.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/finsvc/finance/pkg/auth"
	"github.com/finsvc/finance/pkg/payment"
	"github.com/finsvc/finance/pkg/pgtest"
	"github.com/finsvc/finance/pkg/stacktest"
	"github.com/finsvc/finance/pkg/testkit"
	"github.com/finsvc/finance/pkg/webhook"
	"github.com/finsvc/finance/services/devstack/internal/stack"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

var services = []string{"devkafka", "devstack", "dispatcher", "financectl", "gateway", "outbox-relay", "processor-sim", "status-consumer", "webhook-delivery"}

type client struct {
	t     *testing.T
	base  string
	token string
}

func (c client) do(method, path string, body any, header map[string]string) (int, http.Header, []byte) {
	c.t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+path, r)
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := apiClient(c.t, 10*time.Second).Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

type feed struct {
	UserID       int64 `json:"user_id"`
	Balance      int64 `json:"balance"`
	Transactions []struct {
		ID        int64  `json:"id"`
		Name      string `json:"name"`
		Amount    int64  `json:"amount"`
		Timestamp int64  `json:"timestamp"`
	} `json:"transactions"`
}

// devstackRun is one `devstack run` process, started as `make run` starts
// it and stopped as Ctrl-C stops it.
type devstackRun struct {
	t       testing.TB
	cmd     *exec.Cmd
	out     stacktest.Buffer
	exited  chan error
	stopped bool
}

// devstackEnv is the environment of a `devstack run` from bin on free
// ports, against a fresh test database, with its state in a new folder.
func devstackEnv(t testing.TB, bin string) map[string]string {
	t.Helper()
	return map[string]string{
		"STATE_DIR":           t.TempDir(),
		"BIN_DIR":             bin,
		"DATABASE_URL":        pgtest.NewDB(t),
		"GATEWAY_ADDR":        stacktest.FreeAddr(t),
		"SIM_ADDR":            stacktest.FreeAddr(t),
		"KAFKA_ADDR":          stacktest.FreeAddr(t),
		"DISPATCHER_OPS_ADDR": stacktest.FreeAddr(t),
		"RELAY_OPS_ADDR":      stacktest.FreeAddr(t),
		"STATUS_OPS_ADDR":     stacktest.FreeAddr(t),
		"WEBHOOK_OPS_ADDR":    stacktest.FreeAddr(t),
		"GATEWAY_OPS_ADDR":    stacktest.FreeAddr(t),
		// financectl reconcile --watch's --metrics-addr.
		"RECONCILER_METRICS_ADDR": stacktest.FreeAddr(t),
		"KAFKA_PARTITIONS":        "4",
	}
}

// startDevstack runs `devstack run` with env added to the test's own
// environment and waits for its banner. The test's cleanup stops it if the
// test did not, and shows its output if the test failed.
func startDevstack(t testing.TB, env map[string]string) *devstackRun {
	t.Helper()
	d := &devstackRun{t: t, exited: make(chan error, 1)}
	d.cmd = exec.Command(filepath.Join(env["BIN_DIR"], "devstack"), "run")
	d.cmd.Env = os.Environ()
	for k, v := range env {
		d.cmd.Env = append(d.cmd.Env, k+"="+v)
	}
	d.cmd.Stdout, d.cmd.Stderr = &d.out, &d.out
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.exited <- d.cmd.Wait() }()
	t.Cleanup(func() {
		if !d.stopped {
			_ = d.cmd.Process.Signal(syscall.SIGINT)
			select {
			case <-d.exited:
			case <-time.After(90 * time.Second):
				_ = d.cmd.Process.Kill()
			}
		}
		if t.Failed() {
			t.Logf("devstack output:\n%s", d.out.String())
		}
	})
	testkit.EventuallyWithin(t, 3*time.Minute, "the stack prints its banner", func() bool {
		d.running()
		return strings.Contains(d.out.String(), "Finance Service is running")
	})
	return d
}

// running fails the test once devstack has exited: nothing a test waits
// for can come any more.
func (d *devstackRun) running() {
	d.t.Helper()
	select {
	case err := <-d.exited:
		d.stopped = true
		d.t.Fatalf("devstack exited (%v)", err)
	default:
	}
}

// stop stops devstack as Ctrl-C does and checks that it and every service
// stopped cleanly.
func (d *devstackRun) stop() {
	d.t.Helper()
	d.stopped = true
	_ = d.cmd.Process.Signal(syscall.SIGINT)
	select {
	case err := <-d.exited:
		if err != nil {
			d.t.Errorf("devstack exited with %v", err)
		}
	case <-time.After(90 * time.Second):
		_ = d.cmd.Process.Kill()
		d.t.Fatal("devstack did not stop within 90s of SIGINT")
	}
	for _, s := range []string{"gateway", "dispatcher", "status-consumer", "outbox-relay", "processor-sim", "devkafka"} {
		if !strings.Contains(d.out.String(), s+" stopped (exit 0)") {
			d.t.Errorf("%s did not stop cleanly", s)
		}
	}
}

func TestEndToEndPaymentReachesFeed(t *testing.T) {
	endToEndPaymentReachesFeed(t, devstackEnv(t, stacktest.Binaries(t, services...)))
}

// endToEndPaymentReachesFeed is the body of TestEndToEndPaymentReachesFeed,
// run against whatever PostgreSQL and Kafka env names (docker_test.go runs
// it against containers). Every request to the gateway's public API is
// checked against docs/openapi.yaml (apiClient); after the run, every
// service's log is searched for the secrets the run used.
func endToEndPaymentReachesFeed(t *testing.T, env map[string]string) {
	// The run's own secrets, random so that the logs can be searched for
	// them: the gateway's token secret (AUTH_JWT_SECRET wins over the
	// public dev secret in dev mode), and a password in the database URL,
	// which financectl and the console's reconcile connection use (trust
	// authentication ignores it; a URL that has one keeps it).
	jwtSecret := "e2e-jwt-" + randomHex(t, 24)
	env["AUTH_JWT_SECRET"] = jwtSecret
	dbURL, dbPassword := withPassword(t, env["DATABASE_URL"], "e2e-pg-"+randomHex(t, 12))
	env["DATABASE_URL"] = dbURL
	// The gateway, which handles every one of them, logs every read too,
	// and at debug level (set on its ops port below) until the end.
	env["LOG_READ_SAMPLE"] = "1"

	d := startDevstack(t, env)
	running := d.running
	gatewayOps := "http://" + env["GATEWAY_OPS_ADDR"]
	if got := httpBody(t, "PUT", gatewayOps+"/loglevel", "debug"); !strings.Contains(got, `"level":"debug"`) {
		t.Errorf("PUT /loglevel debug on the gateway's ops port answered %q", got)
	}

	// Where the server runs without autovacuum, the vacuum job runs in its place.
	if autovacuumOff(t) {
		testkit.EventuallyWithin(t, 60*time.Second, "the vacuum job makes its first pass", func() bool {
			running()
			return strings.Contains(d.out.String(), "[financectl-vacuum]") && strings.Contains(d.out.String(), `"msg":"vacuum pass"`)
		})
	} else if strings.Contains(d.out.String(), "financectl vacuum") {
		t.Error("the vacuum job started although the server runs autovacuum")
	}

	token := mintToken(t, jwtSecret, 3456, false)
	admin := mintToken(t, jwtSecret, 1, true)
	gateway := "http://" + env["GATEWAY_ADDR"]
	c := client{t: t, base: gateway, token: token}

	// A webhook receiver for every user's final outcomes, which accepts a
	// delivery only when its signature verifies with the endpoint's secret.
	hooks := startSignedHooks(t)
	whsec := registerReceiver(t, gateway, admin, hooks.url)
	hooks.verifyWith(t, whsec)
	// The user's event stream, open before the payment.
	events := openEvents(t, gateway, token, 3456)

	// The seeded feed is the challenge's example.
	code, _, body := c.do("GET", "/v1/users/3456/feed", nil, nil)
	var before feed
	if code != 200 || json.Unmarshal(body, &before) != nil || before.Balance != 2000 {
		t.Fatalf("seeded feed: %d %s", code, body)
	}

	code, hdr, body := c.do("POST", "/v1/payments",
		map[string]int64{"user_id": 3456, "merchant_id": 4593, "amount": -500},
		map[string]string{"Idempotency-Key": "e2e-" + strconv.FormatInt(time.Now().UnixNano(), 10)})
	if code != http.StatusAccepted {
		t.Fatalf("POST /v1/payments = %d %s", code, body)
	}
	var accepted struct {
		ID     int64  `json:"id"`
		UID    string `json:"uid"`
		Status string `json:"status"`
	}
	if err := json.Unmarshal(body, &accepted); err != nil || accepted.Status != "accepted" {
		t.Fatalf("accepted body %s: %v", body, err)
	}
	location := hdr.Get("Location")
	if accepted.UID == "" || location != "/v1/payments/"+accepted.UID {
		t.Fatalf("Location = %q for payment %d, uid %q", location, accepted.ID, accepted.UID)
	}

	// Long polls, as a client waiting for the outcome would.
	var status string
	testkit.EventuallyWithin(t, 60*time.Second, "the payment becomes final", func() bool {
		running()
		_, _, b := c.do("GET", location+"?wait=5s", nil, nil)
		var p struct {
			Status string `json:"status"`
		}
		_ = json.Unmarshal(b, &p)
		status = p.Status
		return status == "succeeded" || status == "failed" || status == "unknown"
	})
	if status != "succeeded" {
		t.Fatalf("payment ended %q, want succeeded", status)
	}
	if code, hdr, body := c.do("GET", location, nil, nil); code != 200 || hdr.Get("ETag") == "" {
		t.Errorf("GET %s = %d (ETag %q) %s, want 200 with an ETag", location, code, hdr.Get("ETag"), body)
	}

	code, _, body = c.do("GET", "/v1/users/3456/feed", nil, nil)
	var after feed
	if code != 200 || json.Unmarshal(body, &after) != nil {
		t.Fatalf("feed: %d %s", code, body)
	}
	if after.Balance != before.Balance-500 {
		t.Errorf("balance = %d, want %d", after.Balance, before.Balance-500)
	}
	if len(after.Transactions) == 0 || after.Transactions[0].ID != accepted.ID ||
		after.Transactions[0].Amount != -500 || after.Transactions[0].Name != "Apple" {
		t.Errorf("newest feed entry is not the payment: %s", body)
	}
	// The as-is route serves the same feed.
	code, _, body = c.do("GET", "/payment_feed?user_id=3456", nil, nil)
	var asIs feed
	if code != 200 || json.Unmarshal(body, &asIs) != nil || asIs.Balance != after.Balance {
		t.Errorf("GET /payment_feed?user_id=3456 = %d %s, want the feed with balance %d", code, body, after.Balance)
	}

	// The stream and the webhook told the outcome.
	waitEvent(t, events, accepted.UID, "payment.succeeded")
	testkit.EventuallyWithin(t, 60*time.Second, "the payment's signed webhook arrives", func() bool {
		running()
		return hooks.outcome(accepted.UID) == webhook.TypeSucceeded
	})
	if bad := hooks.refused(); len(bad) > 0 {
		t.Errorf("webhook deliveries refused: %v", bad)
	}

	// An operator signs in to the console with the admin token, which is
	// then its session cookie (the console keeps no other secret: its CSRF
	// defence is the Origin and Sec-Fetch-Site check).
	if status, page := consoleRequest(t, gateway, admin, "/console/login", url.Values{"token": {admin}}); status != http.StatusOK {
		t.Errorf("console sign-in: %d, want 200 (the overview after the redirect):\n%s", status, page)
	}

	// The processor executed it exactly once (the simulator's API, not the
	// gateway's: a plain client).
	resp, err := http.Get(fmt.Sprintf("http://%s/sim/executions?user_id=3456", env["SIM_ADDR"]))
	if err != nil {
		t.Fatal(err)
	}
	var execs struct {
		Count int `json:"count"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&execs)
	resp.Body.Close()
	if execs.Count != 1 {
		t.Errorf("processor executions for user 3456 = %d, want 1", execs.Count)
	}

	// Each service connected as its own role, financectl as the URL's user.
	servicesUseTheirRoles(t, env["DATABASE_URL"], running)
	// The gateway's log level is changed on its ops port; the reconciler
	// serves its metrics, the Kafka ones too (it has KAFKA_BROKERS).
	if got := httpBody(t, "PUT", gatewayOps+"/loglevel", "warn"); !strings.Contains(got, `"level":"warn"`) {
		t.Errorf("PUT /loglevel on the gateway's ops port answered %q", got)
	}
	testkit.EventuallyWithin(t, 60*time.Second, "the reconciler serves its metrics, the dead-letter depth included", func() bool {
		running()
		m := httpBody(t, "GET", "http://"+env["RECONCILER_METRICS_ADDR"]+"/metrics", "")
		return strings.Contains(m, "finance_nonfinal_payments") && strings.Contains(m, "finance_dlq_depth_records")
	})

	// Ctrl-C stops everything cleanly.
	d.stop()

	// Secrets never appear in logs: not the token secret, the tokens sent
	// (whole, or the signature alone), the webhook endpoint's secret (whole,
	// or its key without the prefix) or the database password.
	secretsNeverLogged(t, env["STATE_DIR"], d.out.String(), map[string]string{
		"JWT secret (AUTH_JWT_SECRET)": jwtSecret,
		"user's bearer token":          token,
		"user's token signature":       signature(token),
		"admin bearer token":           admin,
		"admin token signature":        signature(admin),
		"webhook secret":               whsec,
		"webhook secret's key":         strings.TrimPrefix(whsec, "whsec_"),
		"database password":            dbPassword,
	})
}

// serviceRoles is the PostgreSQL role each service connects as under
// devstack (migration 00012's, docs/security.md "Least privilege").
var serviceRoles = map[string]string{
	"gateway":          "finance_gateway",
	"outbox-relay":     "finance_outbox_relay",
	"dispatcher":       "finance_dispatcher",
	"status-consumer":  "finance_status_consumer",
	"webhook-delivery": "finance_webhook_delivery",
}

// reconcilerApps are the application_names of the connections that settle
// (migration 00015's finance_reconciler): the periodic reconciler's and the
// gateway console's for resolving unknown payments
// (GATEWAY_RECONCILE_DATABASE_URL). The gateway, which faces the internet,
// so never holds the owner's credentials.
var reconcilerApps = []string{stack.ReconcilerApp, stack.GatewayReconcileApp}

// servicesUseTheirRoles reads pg_stat_activity of the database of dbURL
// (each service's connections carry its name as application_name) and
// fails the test unless every service has connections there, all as its
// own role; the reconciler's and the gateway console's reconcile
// connections as finance_reconciler; and financectl's own (the vacuum job)
// as the URL's user, the schema's owner.
func servicesUseTheirRoles(t *testing.T, dbURL string, running func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cfg, err := pgx.ParseConfig(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var seen map[string][]string // application_name -> its sessions' users
	testkit.EventuallyWithin(t, 60*time.Second, "every service, the reconciler and the console's reconcile pool have a connection to the database", func() bool {
		running()
		seen = map[string][]string{}
		rows, _ := conn.Query(ctx, `SELECT application_name, usename FROM pg_stat_activity
			WHERE datname = $1 AND pid <> pg_backend_pid()`, cfg.Database)
		var app, user string
		if _, err := pgx.ForEachRow(rows, []any{&app, &user}, func() error {
			seen[app] = append(seen[app], user)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		for service := range serviceRoles {
			if len(seen[service]) == 0 {
				return false
			}
		}
		for _, app := range reconcilerApps {
			if len(seen[app]) == 0 {
				return false
			}
		}
		return true
	})
	for service, role := range serviceRoles {
		for _, user := range seen[service] {
			if user != role {
				t.Errorf("%s has a connection as %q, want %q", service, user, role)
			}
		}
	}
	for _, app := range reconcilerApps {
		for _, user := range seen[app] {
			if user != stack.ReconcilerRole {
				t.Errorf("%s has a connection as %q, want %q", app, user, stack.ReconcilerRole)
			}
		}
	}
	for _, user := range seen["financectl"] {
		if user != cfg.User {
			t.Errorf("financectl (the vacuum job) has a connection as %q, want the URL's user %q", user, cfg.User)
		}
	}
}

// httpBody sends one request and returns the answer's body. It is for the
// ops ports (/loglevel, /metrics), which are not the public API: a plain
// client, not apiClient.
func httpBody(t *testing.T, method, u, body string) string {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// After Ctrl-C and another `make run` the simulator still knows what it
// executed, as a real processor would: its record is kept in the state
// folder, and `financectl verify` is clean after any number of restarts.
// Then the database is dropped by hand: the next run creates it anew,
// drops the simulator's record with it, and verify is clean again.
func TestRestartsKeepTheProcessorsRecord(t *testing.T) {
	bin := stacktest.Binaries(t, services...)
	env := devstackEnv(t, bin)
	dbURL := env["DATABASE_URL"]
	var all []paid
	for run := range 2 {
		d := startDevstack(t, env)
		ps := payEach(t, env["GATEWAY_ADDR"], fmt.Sprintf("restart-%d-", run), 20)
		for uid, st := range waitFinal(t, dbURL, ps) {
			if st != payment.StatusSucceeded {
				t.Fatalf("payment %s ended %s, want succeeded", uid, st)
			}
		}
		all = append(all, ps...)
		d.stop()
	}

	d := startDevstack(t, env)
	byUID, _ := executionsByUID(t, "http://"+env["SIM_ADDR"])
	wrong := 0
	for _, p := range all {
		if len(byUID[p.UID]) != 1 {
			wrong++
		}
	}
	if wrong > 0 {
		t.Errorf("after two restarts the processor's record lacks or doubles %d of the %d earlier payments; want each executed once", wrong, len(all))
	}
	financectlVerify(t, env)
	d.stop()

	// The database dropped by hand: the old executions must not show
	// against the new one.
	dropDatabase(t, dbURL)
	d = startDevstack(t, env)
	if !strings.Contains(d.out.String(), "removed the simulator's record") {
		t.Errorf("devstack did not say it removed the simulator's record for the new database")
	}
	if byUID, other := executionsByUID(t, "http://"+env["SIM_ADDR"]); len(byUID) != 0 || other != 0 {
		t.Errorf("the processor's record against a new database: %d payments executed, %d other executions; want none", len(byUID), other)
	}
	ps := payEach(t, env["GATEWAY_ADDR"], "after-drop-", 5)
	waitFinal(t, dbURL, ps)
	financectlVerify(t, env)
	d.stop()
}

// payEach sends n debits of 10..29 over restoreUsers, one after another, and
// returns what the gateway answered.
func payEach(t *testing.T, gatewayAddr, keyPrefix string, n int) []paid {
	t.Helper()
	hc := apiClient(t, 15*time.Second)
	var out []paid
	for i := range n {
		user := restoreUsers[i%len(restoreUsers)]
		token := mintToken(t, auth.DevSecret, user, false)
		p, err := postPayment(hc, "http://"+gatewayAddr, token, keyPrefix+strconv.Itoa(i), user, -int64(10+i%20))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

// financectlVerify runs `financectl verify` from a second terminal, as a
// user would, against the stack of env, and fails the test unless it is
// clean.
func financectlVerify(t *testing.T, env map[string]string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(env["BIN_DIR"], "financectl"), "verify", "--processor-url", "http://"+env["SIM_ADDR"])
	cmd.Env = append(os.Environ(), "DATABASE_URL="+env["DATABASE_URL"])
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("financectl verify: %v\n%s", err, out)
	}
}

// dropDatabase drops the database of dbURL, as a user would by hand.
func dropDatabase(t *testing.T, dbURL string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pgtest.ServerURL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	cfg, err := pgx.ParseConfig(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "DROP DATABASE "+pgx.Identifier{cfg.Database}.Sanitize()+" WITH (FORCE)"); err != nil {
		t.Fatal(err)
	}
}

// autovacuumOff reports whether the test server runs with autovacuum off.
func autovacuumOff(t *testing.T) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pgtest.ServerURL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var setting string
	if err := conn.QueryRow(ctx, "SHOW autovacuum").Scan(&setting); err != nil {
		t.Fatal(err)
	}
	return setting == "off"
}

// mintToken returns a bearer token for user signed with secret, valid an
// hour; admin adds the admin scope.
func mintToken(tb testing.TB, secret string, user int64, admin bool) string {
	tb.Helper()
	tok, err := auth.Mint([]byte(secret), user, admin, time.Hour, time.Now())
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

// sseEvent is one server-sent event of GET /v1/users/{user_id}/events.
type sseEvent struct {
	ID, Type, Data string
}

// openEvents opens user's event stream with token (through apiClient: its
// status and headers are checked against the document) and returns its
// events as they come. The test's cleanup closes it.
func openEvents(t *testing.T, gateway, token string, user int64) <-chan sseEvent {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/v1/users/%d/events", gateway, user), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := apiClient(t, 0).Do(req)
	if err != nil {
		t.Fatalf("GET /v1/users/%d/events: %v", user, err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("GET /v1/users/%d/events = %d %s", user, resp.StatusCode, b)
	}
	t.Cleanup(func() { resp.Body.Close() })
	out := make(chan sseEvent)
	go func() {
		defer close(out)
		sc := bufio.NewScanner(resp.Body)
		var ev sseEvent
		for sc.Scan() {
			field, value, _ := strings.Cut(sc.Text(), ": ")
			switch field {
			case "id":
				ev.ID = value
			case "event":
				ev.Type = value
			case "data":
				ev.Data = value
			case "": // the end of an event, or a comment (heartbeat)
				if ev.Type == "" {
					continue
				}
				select {
				case out <- ev:
				case <-ctx.Done():
					return
				}
				ev = sseEvent{}
			}
		}
	}()
	return out
}

// waitEvent waits, at most a minute, for an event of type typ about the
// payment uid on events.
func waitEvent(t *testing.T, events <-chan sseEvent, uid, typ string) {
	t.Helper()
	timeout := time.After(time.Minute)
	var seen []string
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatalf("the event stream ended before %s of payment %s (events seen: %v)", typ, uid, seen)
			}
			var p struct {
				UID string `json:"uid"`
			}
			_ = json.Unmarshal([]byte(ev.Data), &p)
			if p.UID == uid && ev.Type == typ {
				return
			}
			seen = append(seen, ev.ID+" "+ev.Type)
		case <-timeout:
			t.Fatalf("no %s event of payment %s on the stream within a minute (events seen: %v)", typ, uid, seen)
		}
	}
}

// signedHooks is a webhook receiver on this machine that accepts a
// delivery only when its signature verifies with the endpoint's secret,
// and keeps the type of the last one accepted per payment uid.
type signedHooks struct {
	url string

	mu       sync.Mutex
	verifier *webhook.Verifier
	types    map[string]webhook.Type
	bad      []string
}

// startSignedHooks serves a signedHooks until the test ends.
func startSignedHooks(t *testing.T) *signedHooks {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &signedHooks{url: "http://" + ln.Addr().String() + "/hooks", types: map[string]webhook.Type{}}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return h
}

// verifyWith sets the endpoint's secret, as its registration answered it.
func (h *signedHooks) verifyWith(t *testing.T, secret string) {
	t.Helper()
	v, err := webhook.NewVerifier(secret)
	if err != nil {
		t.Fatalf("the endpoint's secret: %v", err)
	}
	h.mu.Lock()
	h.verifier = v
	h.mu.Unlock()
}

func (h *signedHooks) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	h.mu.Lock()
	defer h.mu.Unlock()
	if err == nil && h.verifier == nil {
		err = errors.New("a delivery before the endpoint's secret is known")
	}
	if err == nil {
		err = h.verifier.Verify(r.Header, body)
	}
	var p webhook.Payload
	if err == nil {
		err = json.Unmarshal(body, &p)
	}
	if err != nil {
		h.bad = append(h.bad, fmt.Sprintf("webhook-id %q: %v", r.Header.Get("webhook-id"), err))
		http.Error(w, "refused", http.StatusUnauthorized)
		return
	}
	h.types[p.Data.UID] = p.Type
	w.WriteHeader(http.StatusNoContent)
}

// outcome is the type of the last delivery accepted for the payment uid.
func (h *signedHooks) outcome(uid string) webhook.Type {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.types[uid]
}

// refused says why deliveries were refused.
func (h *signedHooks) refused() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.bad)
}
