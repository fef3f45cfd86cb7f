package cli_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/finsvc/finance/pkg/entry"
	"github.com/finsvc/finance/pkg/stacktest"
	"github.com/finsvc/finance/pkg/testkit"
	"github.com/finsvc/finance/services/financectl/internal/cli"
)

// scrape reads the unlabelled or labelled samples of /metrics at addr:
// "name" or `name{label="value"}` → value.
func scrape(t *testing.T, addr string) (map[string]float64, error) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("line %q: %w", line, err)
		}
		out[line[:i]] = v
	}
	return out, nil
}

// TestReconcileMetrics runs reconcile --watch --metrics-addr against a real
// database and checks the gauges of the open payments, and that each pass
// refreshes them.
func TestReconcileMetrics(t *testing.T) {
	t.Parallel()
	env, url := demoDB(t)
	pool := openPool(t, url)
	ctx := context.Background()
	// User 1001 has six open debits: accepted 10 minutes, 1 minute and 5
	// seconds ago, processing 3 minutes ago, unknown 4 minutes and 20
	// seconds ago. The oldest was accepted 600 s ago.
	if _, err := pool.Exec(ctx, `UPDATE wallets SET held = 600 WHERE user_id = 1001`); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `
		INSERT INTO payments (user_id, merchant_id, amount, status, idempotency_key, request_hash, hold, created_at, updated_at)
		SELECT 1001, 4593, -100, s, 'm-' || a, 'h', 100, now() - a * interval '1 second', now() - a * interval '1 second'
		FROM (VALUES ('accepted', 600), ('accepted', 60), ('accepted', 5), ('processing', 180), ('unknown', 240), ('unknown', 20)) v(s, a)`); err != nil {
		t.Fatal(err)
	}

	addr := stacktest.FreeAddr(t)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan result, 1)
	go func() {
		var stdout, stderr bytes.Buffer
		// as-is without a statement: nothing can be resolved, the payments stay.
		err := cli.Run(runCtx, []string{"reconcile", "--watch", "200ms", "--api", "as-is", "--no-statement", "--metrics-addr", addr},
			func(k string) string { return env[k] }, &stdout, &stderr)
		code := entry.Exit("financectl", err, &stderr)
		done <- result{code: code, stdout: stdout.String(), stderr: stderr.String()}
	}()
	stopped := false
	stop := func() result {
		t.Helper()
		cancel()
		stopped = true
		select {
		case r := <-done:
			return r
		case <-time.After(30 * time.Second):
			t.Fatal("reconcile --watch did not stop")
		}
		return result{}
	}
	defer func() {
		if !stopped {
			stop()
		}
	}()

	// scrapeUntil scrapes /metrics until ok says the sample set is as wanted.
	scrapeUntil := func(what string, ok func(map[string]float64) bool) map[string]float64 {
		t.Helper()
		var (
			m   map[string]float64
			err error
		)
		defer func() {
			if t.Failed() && !stopped {
				t.Logf("last scrape %v (err %v)\nstderr:\n%s", m, err, stop().stderr)
			}
		}()
		testkit.Eventually(t, "metrics showing "+what, func() bool {
			m, err = scrape(t, addr)
			return err == nil && ok(m)
		})
		return m
	}

	m := scrapeUntil("a finished pass", func(m map[string]float64) bool { return m[`finance_reconcile_passes_total{result="ok"}`] >= 1 })
	for name, want := range map[string]float64{
		`finance_nonfinal_payments{status="accepted"}`:    3,
		`finance_nonfinal_payments{status="processing"}`:  1,
		`finance_nonfinal_payments{status="unknown"}`:     2,
		`finance_reconcile_passes_total{result="failed"}`: 0,
		// Examined and left: both unknown, and the two accepted or
		// processing for over --stuck-after (2m).
		`finance_reconcile_left_payments`:              4,
		`finance_reconcile_executions_without_payment`: 0,
	} {
		if got, ok := m[name]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", name, got, ok, want)
		}
	}
	if age := m["finance_oldest_nonfinal_payment_age_seconds"]; age < 600 || age > 660 {
		t.Errorf("finance_oldest_nonfinal_payment_age_seconds = %v, want about 600", age)
	}
	if ts := m["finance_reconcile_last_success_timestamp_seconds"]; time.Since(time.Unix(int64(ts), 0)) > time.Minute {
		t.Errorf("finance_reconcile_last_success_timestamp_seconds = %v, not recent", ts)
	}
	if _, ok := m["go_goroutines"]; !ok {
		t.Error("the Go collector is missing")
	}

	// Every open payment fails: the next pass's refresh shows none, and the
	// age falls to 0.
	if _, err := pool.Exec(ctx, `UPDATE payments SET status = 'failed', hold = 0 WHERE user_id = 1001 AND status <> 'succeeded'`); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `UPDATE wallets SET held = 0 WHERE user_id = 1001`); err != nil {
		t.Fatal(err)
	}
	m = scrapeUntil("no open payment", func(m map[string]float64) bool {
		return m[`finance_nonfinal_payments{status="accepted"}`] == 0 && m[`finance_nonfinal_payments{status="processing"}`] == 0 &&
			m[`finance_nonfinal_payments{status="unknown"}`] == 0
	})
	if age := m["finance_oldest_nonfinal_payment_age_seconds"]; age != 0 {
		t.Errorf("finance_oldest_nonfinal_payment_age_seconds = %v with no open payment, want 0", age)
	}
	if resp, err := http.Get("http://" + addr + "/readyz"); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("/readyz: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	if r := stop(); r.code != 0 {
		t.Errorf("reconcile --watch exit %d after cancel\n%s", r.code, r.stderr)
	}
}

func TestMetricsAddrNeedsWatch(t *testing.T) {
	t.Parallel()
	r := run(t, map[string]string{"DATABASE_URL": "postgres://postgres@127.0.0.1:1/none"}, "reconcile", "--metrics-addr", ":9104")
	if r.code != exitUsage || !strings.Contains(r.stderr, "--metrics-addr needs --watch") {
		t.Errorf("exit %d\n%s", r.code, r.stderr)
	}
}
