package main_test

// The end-to-end test: it builds (or takes from FINANCE_BIN_DIR) the real
// binaries, starts the whole pipeline with `devstack run` as separate
// processes on free ports, and drives a payment over HTTP like a user.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/finsvc/finance/pkg/auth"
	"github.com/finsvc/finance/pkg/payment"
	"github.com/finsvc/finance/pkg/pgtest"
	"github.com/finsvc/finance/pkg/stacktest"
	"github.com/finsvc/finance/pkg/testkit"
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
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
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
// it against containers).
func endToEndPaymentReachesFeed(t *testing.T, env map[string]string) {
	d := startDevstack(t, env)
	running := d.running

	// Where the server runs without autovacuum, the vacuum job runs in its place.
	if autovacuumOff(t) {
		testkit.EventuallyWithin(t, 60*time.Second, "the vacuum job makes its first pass", func() bool {
			running()
			return strings.Contains(d.out.String(), "[financectl-vacuum]") && strings.Contains(d.out.String(), `"msg":"vacuum pass"`)
		})
	} else if strings.Contains(d.out.String(), "financectl vacuum") {
		t.Error("the vacuum job started although the server runs autovacuum")
	}

	token, err := auth.Mint([]byte(auth.DevSecret), 3456, false, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	c := client{t: t, base: "http://" + env["GATEWAY_ADDR"], token: token}

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

	var status string
	testkit.EventuallyWithin(t, 60*time.Second, "the payment becomes final", func() bool {
		running()
		_, _, b := c.do("GET", location, nil, nil)
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

	// The processor executed it exactly once.
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
	gatewayOps := "http://" + env["GATEWAY_OPS_ADDR"]
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

// gatewayReconcileApp is the application_name of the gateway console's
// connection for resolving unknown payments (GATEWAY_RECONCILE_DATABASE_URL):
// it settles, so devstack gives it financectl reconcile's user, not the
// gateway's role.
const gatewayReconcileApp = "gateway-reconcile"

// servicesUseTheirRoles reads pg_stat_activity of the database of dbURL
// (each service's connections carry its name as application_name) and
// fails the test unless every service has connections there, all as its
// own role, and financectl's (the reconciler's) and the gateway console's
// reconcile connection are the URL's user.
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
	testkit.EventuallyWithin(t, 60*time.Second, "every service, and the console's reconcile pool, has a connection to the database", func() bool {
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
		return len(seen[gatewayReconcileApp]) > 0
	})
	for service, role := range serviceRoles {
		for _, user := range seen[service] {
			if user != role {
				t.Errorf("%s has a connection as %q, want %q", service, user, role)
			}
		}
	}
	for _, app := range []string{"financectl", gatewayReconcileApp} {
		for _, user := range seen[app] {
			if user != cfg.User {
				t.Errorf("%s has a connection as %q, want the URL's user %q", app, user, cfg.User)
			}
		}
	}
}

// httpBody sends one request and returns the answer's body.
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
	var out []paid
	for i := range n {
		user := restoreUsers[i%len(restoreUsers)]
		token, err := auth.Mint([]byte(auth.DevSecret), user, false, time.Hour, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		p, err := postPayment("http://"+gatewayAddr, token, keyPrefix+strconv.Itoa(i), user, -int64(10+i%20))
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
