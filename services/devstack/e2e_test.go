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
	"github.com/finsvc/finance/pkg/pgtest"
	"github.com/finsvc/finance/pkg/stacktest"
	"github.com/finsvc/finance/pkg/testkit"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

var services = []string{"devkafka", "devstack", "dispatcher", "financectl", "gateway", "outbox-relay", "processor-sim", "status-consumer"}

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

func TestEndToEndPaymentReachesFeed(t *testing.T) {
	bin := stacktest.Binaries(t, services...)
	gateway, sim := stacktest.FreeAddr(t), stacktest.FreeAddr(t)
	var out stacktest.Buffer
	cmd := exec.Command(filepath.Join(bin, "devstack"), "run")
	cmd.Env = append(os.Environ(),
		"STATE_DIR="+t.TempDir(),
		"BIN_DIR="+bin,
		"DATABASE_URL="+pgtest.NewDB(t),
		"GATEWAY_ADDR="+gateway,
		"SIM_ADDR="+sim,
		"KAFKA_ADDR="+stacktest.FreeAddr(t),
		"DISPATCHER_OPS_ADDR="+stacktest.FreeAddr(t),
		"RELAY_OPS_ADDR="+stacktest.FreeAddr(t),
		"STATUS_OPS_ADDR="+stacktest.FreeAddr(t),
		"KAFKA_PARTITIONS=4",
	)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = cmd.Process.Signal(syscall.SIGINT)
			select {
			case <-exited:
			case <-time.After(90 * time.Second):
				_ = cmd.Process.Kill()
			}
		}
		if t.Failed() {
			t.Logf("devstack output:\n%s", out.String())
		}
	})
	// running fails the test once devstack has exited: nothing a test
	// waits for can come any more.
	running := func() {
		select {
		case err := <-exited:
			stopped = true
			t.Fatalf("devstack exited (%v)", err)
		default:
		}
	}

	testkit.EventuallyWithin(t, 3*time.Minute, "the stack prints its banner", func() bool {
		running()
		return strings.Contains(out.String(), "Finance Service is running")
	})

	// Where the server runs without autovacuum, the vacuum job runs in its place.
	if autovacuumOff(t) {
		testkit.EventuallyWithin(t, 60*time.Second, "the vacuum job makes its first pass", func() bool {
			running()
			return strings.Contains(out.String(), "[financectl-vacuum]") && strings.Contains(out.String(), `"msg":"vacuum pass"`)
		})
	} else if strings.Contains(out.String(), "financectl vacuum") {
		t.Error("the vacuum job started although the server runs autovacuum")
	}

	token, err := auth.Mint([]byte(auth.DevSecret), 3456, false, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	c := client{t: t, base: "http://" + gateway, token: token}

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
	resp, err := http.Get(fmt.Sprintf("http://%s/sim/executions?user_id=3456", sim))
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

	// Ctrl-C stops everything cleanly.
	stopped = true
	_ = cmd.Process.Signal(syscall.SIGINT)
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("devstack exited with %v", err)
		}
	case <-time.After(90 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("devstack did not stop within 90s of SIGINT")
	}
	for _, s := range []string{"gateway", "dispatcher", "status-consumer", "outbox-relay", "processor-sim", "devkafka"} {
		if !strings.Contains(out.String(), s+" stopped (exit 0)") {
			t.Errorf("%s did not stop cleanly", s)
		}
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
