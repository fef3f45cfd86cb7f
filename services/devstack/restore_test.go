package main_test

// The restore tests of issue 10: the pipeline after its database was
// restored from a backup, and after it was replaced by a fresh one, while
// Kafka and the processor keep their state. They start the real binaries
// (stack.Start, as `make run`), speak HTTP like a user, restore with
// pg_dump/pg_restore and check with financectl, as an operator would.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/finsvc/finance/pkg/auth"
	"github.com/finsvc/finance/pkg/payment"
	"github.com/finsvc/finance/pkg/pgtest"
	"github.com/finsvc/finance/pkg/stacktest"
	"github.com/finsvc/finance/pkg/testkit"
	"github.com/finsvc/finance/pkg/verify"
	"github.com/finsvc/finance/services/devstack/internal/chaos"
	"github.com/finsvc/finance/services/devstack/internal/stack"
)

// restoreUsers are the demo users that `financectl seed --demo` gives
// 100000 each; the tests' debits of 10..99 never run them dry.
var restoreUsers = []int64{1001, 1002, 1003, 1004, 1005}

// paid is what the gateway answered for one payment.
type paid struct {
	ID  int64  `json:"id"`
	UID string `json:"uid"`
}

// restoreRig is one state directory (broker data, the simulator's journal,
// logs) and one stack configuration, started and stopped as often as a
// test needs, against a database of its choosing.
type restoreRig struct {
	t    *testing.T
	cfg  stack.Config
	opts stack.Options
	st   *stack.Stack
	out  stacktest.Buffer
	// next numbers the payments' idempotency keys across runs.
	next int
}

func newRestoreRig(t *testing.T) *restoreRig {
	t.Helper()
	bin := stacktest.Binaries(t, services...)
	state := t.TempDir()
	env := map[string]string{"STATE_DIR": state, "BIN_DIR": bin, "KAFKA_PARTITIONS": "4", "DEVSTACK_QUIET": "true"}
	cfg, err := chaos.StackConfig(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	r := &restoreRig{t: t, cfg: cfg}
	r.opts = stack.Options{
		Quiet: true,
		// The simulator keeps its record of executions across restarts, as
		// the real processor would; some payments are declined.
		SimEnv: []string{
			"SIM_DATA_FILE=" + filepath.Join(state, "processor-sim.jsonl"),
			"SIM_DECLINE_RATE=0.1", "SIM_LATENCY_P50=5ms", "SIM_LATENCY_P99=30ms",
		},
	}
	t.Cleanup(func() {
		r.stop()
		if t.Failed() {
			t.Logf("stack output:\n%s", r.out.String())
		}
	})
	return r
}

// start brings the pipeline up on dbURL; env is added to every service's.
func (r *restoreRig) start(dbURL string, env ...string) {
	r.t.Helper()
	r.cfg.DatabaseURL = dbURL
	opts := r.opts
	opts.Env = env
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	st, err := stack.Start(ctx, r.cfg, opts, &r.out)
	if err != nil {
		r.t.Fatalf("start the stack: %v", err)
	}
	r.st = st
}

// stop stops the services, then the broker (gracefully).
func (r *restoreRig) stop() {
	if r.st != nil {
		r.st.Close()
		r.st = nil
	}
}

// pay sends n payments (debits of 10..99 over restoreUsers) from 8 clients
// and returns what the gateway answered; every one must be accepted.
func (r *restoreRig) pay(n int) []paid {
	r.t.Helper()
	tokens := map[int64]string{}
	for _, u := range restoreUsers {
		tokens[u] = mintToken(r.t, auth.DevSecret, u, false)
	}
	hc := apiClient(r.t, 15*time.Second)
	out := make([]paid, n)
	errs := make([]error, n)
	first := r.next
	r.next += n
	var wg sync.WaitGroup
	work := make(chan int)
	for range 8 {
		wg.Go(func() {
			for i := range work {
				user := restoreUsers[i%len(restoreUsers)]
				key := "restore-" + strconv.Itoa(first+i)
				out[i], errs[i] = postPayment(hc, r.st.GatewayURL, tokens[user], key, user, -int64(10+(first+i)%90))
			}
		})
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		r.t.Fatalf("payments: %v", err)
	}
	return out
}

// postPayment posts one payment with hc (apiClient's), retrying with the
// same key on a transport error, a 500, 503 or 429, as a client should.
func postPayment(hc *http.Client, gateway, token, key string, user, amount int64) (paid, error) {
	body, _ := json.Marshal(map[string]int64{"user_id": user, "merchant_id": 4593, "amount": amount})
	var last error
	for range 20 {
		req, _ := http.NewRequest(http.MethodPost, gateway+"/v1/payments", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", key)
		resp, err := hc.Do(req)
		if err != nil {
			last = err
			time.Sleep(200 * time.Millisecond)
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusAccepted, http.StatusOK:
			var p paid
			if err := json.Unmarshal(b, &p); err != nil || p.UID == "" {
				return paid{}, fmt.Errorf("payment %s: answer %s: %v", key, b, err)
			}
			return p, nil
		case http.StatusServiceUnavailable, http.StatusInternalServerError:
			// A 500 says "retry with the same Idempotency-Key": a client
			// does, as the chaos client does; 20 of them still fail.
			last = fmt.Errorf("%d %s", resp.StatusCode, b)
			time.Sleep(200 * time.Millisecond)
		case http.StatusTooManyRequests:
			// The gateway's per-user limit (20/s): a client waits as told
			// and sends again with the same key, as the chaos client does.
			last = fmt.Errorf("429 %s", b)
			wait, err := strconv.Atoi(resp.Header.Get("Retry-After"))
			if err != nil || wait < 1 {
				wait = 1
			}
			time.Sleep(time.Duration(wait) * time.Second)
		default:
			return paid{}, fmt.Errorf("payment %s: %d %s", key, resp.StatusCode, b)
		}
	}
	return paid{}, fmt.Errorf("payment %s: %w", key, last)
}

// waitFinal waits until every payment of ps is succeeded or failed in
// dbURL, at most 2 minutes (the liveness bound), and returns their statuses
// by uid.
func waitFinal(t *testing.T, dbURL string, ps []paid) map[string]payment.Status {
	t.Helper()
	uids := make([]string, len(ps))
	for i, p := range ps {
		uids[i] = p.UID
	}
	var got map[string]payment.Status
	open := len(ps)
	defer func() {
		if open > 0 { // the wait gave up
			t.Logf("%d of %d payments were still not final", open, len(ps))
		}
	}()
	testkit.EventuallyWithin(t, 2*time.Minute, fmt.Sprintf("every one of %d payments final", len(ps)), func() bool {
		got = statuses(t, dbURL, uids)
		open = 0
		for _, uid := range uids {
			if !got[uid].Final() {
				open++
			}
		}
		return open == 0
	})
	return got
}

func statuses(t *testing.T, dbURL string, uids []string) map[string]payment.Status {
	t.Helper()
	got := map[string]payment.Status{}
	var uid string
	var st payment.Status
	eachRow(t, dbURL, []any{&uid, &st}, func() { got[uid] = st },
		`SELECT uid::text, status FROM payments WHERE uid::text = ANY($1)`, uids)
	return got
}

// eachRow runs one query on dbURL and calls row after scanning each row
// into dest.
func eachRow(t *testing.T, dbURL string, dest []any, row func(), sql string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, _ := conn.Query(ctx, sql, args...)
	if _, err := pgx.ForEachRow(rows, dest, func() error {
		row()
		return nil
	}); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// executionsByUID reads the simulator's statement: executions per payment
// uid, and the executions whose key is not a payment uid key.
func executionsByUID(t *testing.T, simURL string) (byUID map[string][]verify.Execution, other int) {
	t.Helper()
	byUID = map[string][]verify.Execution{}
	for e, err := range verify.NewHTTPStatement(simURL).Executions(context.Background()) {
		if err != nil {
			t.Fatalf("read the processor's statement: %v", err)
		}
		if uid, ok := payment.ParseProcessorKey(e.IdempotencyKey); ok {
			byUID[uid.String()] = append(byUID[uid.String()], e)
		} else {
			other++
		}
	}
	return byUID, other
}

// financectl runs financectl with the stack's environment and returns its
// standard output; it fails the test on a non-zero exit unless allowFail.
func (r *restoreRig) financectl(allowFail bool, args ...string) []byte {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := r.st.Command(ctx, "financectl", args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil && !allowFail {
		r.t.Fatalf("financectl %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.Bytes()
}

// pgTool finds a PostgreSQL client program: on PATH, or beside the server's
// binaries.
func pgTool(t *testing.T, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if ms, _ := filepath.Glob("/usr/lib/postgresql/*/bin/" + name); len(ms) > 0 {
		return ms[len(ms)-1]
	}
	t.Fatalf("%s not found: install the PostgreSQL client programs (Debian: postgresql-client)", name)
	return ""
}

func runTool(t *testing.T, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(pgTool(t, name), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// A backup taken after 200 payments is restored after 300 more: the
// database forgets those 300 and its id sequence rolls back, while Kafka and
// the processor remember them. After `financectl after-restore` and a
// restart, 300 new payments (whose numeric ids repeat the forgotten ones')
// all end final and none is taken for an old execution; reconcile lists
// exactly the executions the restore lost; `financectl recover --apply`
// books them, and `financectl verify` is clean.
func TestRestoreFromBackupNeverConfusesPaymentsAndRecovers(t *testing.T) {
	// Not parallel: each of these tests runs a whole stack, and several at
	// once would share two cores and PostgreSQL's connection limit.
	r := newRestoreRig(t)
	dbURL := pgtest.NewDB(t)
	dump := filepath.Join(t.TempDir(), "finance.dump")

	r.start(dbURL)
	before := r.pay(200)
	waitFinal(t, dbURL, before)
	runTool(t, "pg_dump", "--format=custom", "--file="+dump, dbURL)
	lostPayments := r.pay(300)
	lostStatus := waitFinal(t, dbURL, lostPayments)
	r.stop()

	// The restore: the database as it was after the first 200.
	runTool(t, "pg_restore", "--clean", "--if-exists", "--no-owner", "--dbname="+dbURL, dump)
	r.start(dbURL)
	var ar struct {
		WithoutPayment []struct {
			PaymentUID string `json:"payment_uid"`
			Key        string `json:"key"`
			UserID     int64  `json:"user_id"`
			Amount     int64  `json:"amount"`
		} `json:"executions_without_payment"`
	}
	arOut := r.financectl(false, "after-restore", "--processor-url", r.st.SimURL, "--json")
	if err := json.Unmarshal(arOut, &ar); err != nil {
		t.Fatalf("after-restore --json: %v\n%s", err, arOut)
	}

	// Exactly the forgotten payments that the processor executed.
	wantLost := map[string]bool{}
	for _, p := range lostPayments {
		if lostStatus[p.UID] == payment.StatusSucceeded {
			wantLost[p.UID] = true
		}
	}
	if len(wantLost) == 0 || len(wantLost) == len(lostPayments) {
		t.Fatalf("%d of %d forgotten payments executed; want some declines and some executions", len(wantLost), len(lostPayments))
	}
	gotLost := map[string]bool{}
	for _, l := range ar.WithoutPayment {
		if !wantLost[l.PaymentUID] {
			t.Errorf("after-restore lists %s (key %s), not an execution the restore lost", l.PaymentUID, l.Key)
		}
		gotLost[l.PaymentUID] = true
	}
	if len(gotLost) != len(wantLost) {
		t.Errorf("after-restore lists %d executions without payment, want the %d the restore lost", len(gotLost), len(wantLost))
	}

	// New payments: their ids repeat the forgotten ones', their uids never do.
	after := r.pay(300)
	waitFinal(t, dbURL, after)
	repeated := 0
	lostIDs := map[int64]bool{}
	for _, p := range lostPayments {
		lostIDs[p.ID] = true
	}
	for _, p := range after {
		if lostIDs[p.ID] {
			repeated++
		}
	}
	if repeated == 0 {
		t.Errorf("no new payment reused a forgotten payment's id: the restore did not roll the sequence back, the test proves nothing")
	}
	byUID, other := executionsByUID(t, r.st.SimURL)
	if other != 0 {
		t.Errorf("%d executions under keys that are no payment uid key", other)
	}
	for _, p := range append(append(before, lostPayments...), after...) {
		if n := len(byUID[p.UID]); n > 1 {
			t.Errorf("payment %s executed %d times", p.UID, n)
		}
	}

	// Recover books the lost executions; then verify is clean.
	r.financectl(false, "recover", "--processor-url", r.st.SimURL, "--apply")
	r.verifyClean()
}

// verifyClean runs financectl verify and fails the test on any violation.
func (r *restoreRig) verifyClean() {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := r.st.Command(ctx, "financectl", "verify", "--processor-url", r.st.SimURL)
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.t.Errorf("financectl verify: %v\n%s", err, out)
	}
}

// A fresh database behind a broker that still holds the records of an
// earlier run, with the dispatcher's consumer group renamed (its offsets
// start over: an offset rewind). Every old request is refused as stale and
// never reaches the processor; every new payment ends final.
func TestFreshDatabaseWithOldBrokerRecordsExecutesNothingStale(t *testing.T) {
	// Not parallel: each of these tests runs a whole stack, and several at
	// once would share two cores and PostgreSQL's connection limit.
	r := newRestoreRig(t)
	oldDB := pgtest.NewDB(t)
	r.start(oldDB)
	old := r.pay(150)
	oldStatus := waitFinal(t, oldDB, old)
	r.stop()

	freshDB := pgtest.NewDB(t)
	r.start(freshDB, "DISPATCHER_GROUP=dispatcher-rewound")
	fresh := r.pay(150)
	waitFinal(t, freshDB, fresh)

	// Every old request went through the dispatcher again and was refused.
	waitMetric(t, r.cfg.DispatcherOps, `dispatcher_dead_letters_total{reason="stale"}`, float64(len(old)))
	after, other := executionsByUID(t, r.st.SimURL)
	if other != 0 {
		t.Errorf("%d executions under keys that are no payment uid key", other)
	}
	for _, p := range old {
		want := map[payment.Status]int{payment.StatusSucceeded: 1, payment.StatusFailed: 0}[oldStatus[p.UID]]
		if len(after[p.UID]) != want {
			t.Errorf("old payment %s (%s in the old database): executed %d times, want %d", p.UID, oldStatus[p.UID], len(after[p.UID]), want)
		}
	}
	for _, p := range fresh {
		if n := len(after[p.UID]); n > 1 {
			t.Errorf("new payment %s executed %d times", p.UID, n)
		}
	}
}

// waitMetric waits, at most 2 minutes (the liveness bound), until the
// dispatcher's metric name reaches want; when it never does, it shows where
// the dispatcher's counters stood.
func waitMetric(t *testing.T, opsAddr, name string, want float64) {
	t.Helper()
	var got float64
	defer func() {
		if got < want { // the wait gave up
			t.Logf("%s stood at %v, want %v; dispatcher:\n%s", name, got, want,
				metricLines(opsAddr, "dispatcher_dead_letters_total", "dispatcher_guard_total", "dispatcher_outcomes_total", "dispatcher_processor_calls_total"))
		}
	}()
	testkit.EventuallyWithin(t, 2*time.Minute, fmt.Sprintf("%s to reach %v", name, want), func() bool {
		got = metric(t, opsAddr, name)
		return got >= want
	})
}

// metric reads one sample of a service's /metrics (0 when absent).
func metric(t *testing.T, opsAddr, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + opsAddr + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f
		}
	}
	return 0
}
