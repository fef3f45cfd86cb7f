package cli_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/finsvc/finance/pkg/payment"
	"github.com/finsvc/finance/pkg/stacktest"
	"github.com/finsvc/finance/pkg/testkit"
)

// startProcessorSim builds and starts the real processor-sim on a free port,
// without latency, and returns its URL.
func startProcessorSim(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "processor-sim")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = filepath.Join("..", "..", "..", "processor-sim")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build processor-sim: %v\n%s", err, out)
	}
	addr := stacktest.FreeAddr(t)
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "HTTP_ADDR="+addr, "SIM_LATENCY_P50=0s", "SIM_LATENCY_P99=0s", "LOG_LEVEL=error")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	url := "http://" + addr
	testkit.Eventually(t, "processor-sim at "+url+" to answer /healthz", func() bool {
		resp, err := http.Get(url + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return url
}

func simCall(t *testing.T, method, url, key, body string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: HTTP %d", method, url, resp.StatusCode)
	}
}

// TestReconcileAgainstProcessorSim runs reconcile and verify against the
// real simulator: its statement and lookup formats, both APIs.
func TestReconcileAgainstProcessorSim(t *testing.T) {
	t.Parallel()
	sim := startProcessorSim(t)
	env, url := demoDB(t)
	pool := openPool(t, url)
	ctx := context.Background()
	// Every payment's uid is uidOf(id), so that the calls below can send its key.
	uidOf := func(id int64) uuid.UUID { return uuid.MustParse(fmt.Sprintf("00000000-0000-7000-8000-%012d", id)) }
	keyOf := func(id int64) string { return payment.ProcessorKey(uidOf(id)) }
	status := func(id int64) string {
		var s string
		if err := pool.QueryRow(ctx, `SELECT status FROM payments WHERE id = $1`, id).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	unknown := func(user int64, updatedAgo string, ps ...[2]int64) {
		t.Helper()
		var held int64
		for _, p := range ps {
			held -= p[1]
			if _, err := pool.Exec(ctx, fmt.Sprintf(`
				INSERT INTO payments (id, uid, user_id, merchant_id, amount, status, idempotency_key, request_hash, hold, failure_reason, created_at, updated_at)
				VALUES (%[1]d, '%[6]s', %[2]d, 4593, %[3]d, 'unknown', 'k-%[1]d', 'h', %[4]d, 'timeout', now() - interval '%[5]s' - interval '1 second', now() - interval '%[5]s')`,
				p[0], user, p[1], -p[1], updatedAgo, uidOf(p[0]))); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := pool.Exec(ctx, `UPDATE wallets SET held = held + $2 WHERE user_id = $1`, user, held); err != nil {
			t.Fatal(err)
		}
	}

	// Proposed API: executed, declined, never sent.
	unknown(1001, "5 minutes", [2]int64{300001, -500}, [2]int64{300002, -300}, [2]int64{300003, -900})
	simCall(t, http.MethodPost, sim+"/v2/payments", keyOf(300001), `{"user_id":1001,"amount":-500,"reference":"300001"}`)
	simCall(t, http.MethodPut, sim+"/sim/config", "", `{"decline_rate":1}`)
	simCall(t, http.MethodPost, sim+"/v2/payments", keyOf(300003), `{"user_id":1001,"amount":-900,"reference":"300003"}`)

	if r := run(t, env, "verify", "--processor-url", sim); r.code != 1 || !strings.Contains(r.stdout, "executed_not_succeeded     1") {
		t.Errorf("verify before reconciling: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := run(t, env, "reconcile", "--processor-url", sim); r.code != 0 {
		t.Fatalf("reconcile: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for id, want := range map[int64]string{300001: "succeeded", 300002: "failed", 300003: "failed"} {
		if got := status(id); got != want {
			t.Errorf("payment %d is %s, want %s", id, got, want)
		}
	}

	// As-is API: one execution per amount, but two payments of -250. The
	// processor executed them before they became unknown (as when the
	// dispatcher's call times out after the processor paid), 2 s before now:
	// their windows (2 s ago + 1 s + 1 s) end now, with the executions in
	// them, and are closed for the statement the reconciler reads next.
	simCall(t, http.MethodPut, sim+"/sim/config", "", `{"decline_rate":0,"api":"as-is"}`)
	simCall(t, http.MethodPost, sim+"/payment", "", `{"user_id":1002,"amount":-700}`)
	simCall(t, http.MethodPost, sim+"/payment", "", `{"user_id":1002,"amount":-250}`)
	unknown(1002, "2 seconds", [2]int64{300004, -700}, [2]int64{300005, -250}, [2]int64{300006, -250})
	r := run(t, env, "reconcile", "--processor-url", sim, "--safety-bound", "1s", "--clock-skew", "1s")
	if r.code != 0 {
		t.Fatalf("reconcile as-is: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for id, want := range map[int64]string{300004: "succeeded", 300005: "unknown", 300006: "unknown"} {
		if got := status(id); got != want {
			t.Errorf("payment %d is %s, want %s\n%s", id, got, want, r.stdout)
		}
	}
	if r := run(t, env, "verify", "--processor-url", sim); r.code != 0 {
		t.Errorf("verify after reconciling: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}
