package cli_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/finsvc/finance/pkg/payment"
	"github.com/finsvc/finance/pkg/pgtest"
	"github.com/finsvc/finance/pkg/verify"
	financev1 "github.com/finsvc/finance/proto/finance/v1"
)

// fakeProcessor serves the processor-sim's statement and lookup routes.
type fakeProcessor struct {
	mu         sync.Mutex
	executions []map[string]any
	resources  map[string]map[string]any
}

func (f *fakeProcessor) serve(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/sim/executions" {
			_ = json.NewEncoder(w).Encode(map[string]any{"count": len(f.executions), "executions": f.executions})
			return
		}
		if key, ok := strings.CutPrefix(r.URL.Path, "/v2/payments/"); ok {
			if res, ok := f.resources[key]; ok {
				_ = json.NewEncoder(w).Encode(res)
				return
			}
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"error":"not_found"}`))
			return
		}
		http.NotFound(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// demoDB is a migrated database with the demo data.
func demoDB(t *testing.T) (map[string]string, string) {
	t.Helper()
	url := pgtest.NewDB(t)
	env := map[string]string{"DATABASE_URL": url}
	if r := run(t, env, "seed", "--demo"); r.code != 0 {
		t.Fatalf("seed --demo: %d %s", r.code, r.stderr)
	}
	return env, url
}

func TestVerify(t *testing.T) {
	t.Parallel()
	env, url := demoDB(t)
	proc := &fakeProcessor{executions: []map[string]any{}}
	sim := proc.serve(t)

	r := run(t, env, "verify", "--processor-url", sim)
	if r.code != 0 || !strings.Contains(r.stdout, "OK: no violation") || !strings.Contains(r.stdout, "processor statement: 0 executions") {
		t.Fatalf("verify on the demo data: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// Break one balance: exit 1, the violation named, also in JSON.
	pool := openPool(t, url)
	if _, err := pool.Exec(context.Background(), `UPDATE wallets SET balance = balance + 1 WHERE user_id = 3456`); err != nil {
		t.Fatal(err)
	}
	r = run(t, env, "verify", "--processor-url", sim)
	if r.code != 1 || !strings.Contains(r.stdout, "balance_mismatch") || !strings.Contains(r.stdout, "user 3456: balance 2001") ||
		!strings.Contains(r.stderr, "invariants violated: 1 violations") {
		t.Errorf("verify after breaking a balance: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = run(t, env, "verify", "--no-statement", "--json")
	var rep verify.Report
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("verify --json: %v\n%s", err, r.stdout)
	}
	if r.code != 1 || rep.Statement || rep.Count(verify.BalanceMismatch) != 1 || rep.Violations() != 1 {
		t.Errorf("verify --json: exit %d, %+v", r.code, rep)
	}
	if strings.Contains(r.stdout, "SIM_DATA_FILE") {
		t.Errorf("verify printed the hint for a lost processor record without succeeded_not_executed:\n%s", r.stdout)
	}

	// A payment succeeded here that the processor does not know: the hint
	// for a simulator that lost its record follows the report.
	if _, err := pool.Exec(context.Background(), `
		INSERT INTO payments (uid, user_id, merchant_id, amount, status, idempotency_key, request_hash, hold, created_at, updated_at)
		VALUES ($1, 1001, 4593, -500, 'succeeded', 'forgotten-1', 'h', 0, now() - interval '10 minutes', now() - interval '10 minutes')`,
		payment.NewUID()); err != nil {
		t.Fatal(err)
	}
	r = run(t, env, "verify", "--processor-url", sim)
	if r.code != 1 || !strings.Contains(r.stdout, "succeeded_not_executed: payment") ||
		!strings.Contains(r.stdout, "it ran without\nSIM_DATA_FILE") {
		t.Errorf("verify with a succeeded payment the processor never executed: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

func TestVerifyAndReconcileUsageErrors(t *testing.T) {
	t.Parallel()
	env := map[string]string{"DATABASE_URL": "postgres://postgres@127.0.0.1:1/none"}
	for _, args := range [][]string{
		{"verify", "--bogus"},
		{"verify", "extra"},
		{"verify", "--examples", "0"},
		{"verify", "--unknown-bound", "-1s"},
		{"reconcile", "--api", "v3"},
		{"reconcile", "--safety-bound", "0s"},
		{"reconcile", "--watch", "-1s"},
		{"reconcile", "--stuck-after", "-1m"},
		{"reconcile", "--stuck-lookups", "-1"},
		{"verify", "--stuck-after", "-1m"},
	} {
		if r := run(t, env, args...); r.code != 2 || !strings.Contains(r.stderr, "usage: financectl "+args[0]) {
			t.Errorf("%v: exit %d, want 2 with usage\n%s", args, r.code, r.stderr)
		}
	}
}

func TestReconcile(t *testing.T) {
	t.Parallel()
	env, url := demoDB(t)
	pool := openPool(t, url)
	ctx := context.Background()
	// Payment 200001 of user 1001 was left unknown ten minutes ago; the
	// processor executed it. 200002 was never executed.
	uid1, uid2 := payment.NewUID(), payment.NewUID()
	if _, err := pool.Exec(ctx, `UPDATE wallets SET held = 800 WHERE user_id = 1001`); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `
		INSERT INTO payments (id, uid, user_id, merchant_id, amount, status, idempotency_key, request_hash, hold, failure_reason, created_at, updated_at)
		VALUES (200001, $1, 1001, 4593, -500, 'unknown', 'u-1', 'h', 500, 'timeout', now() - interval '10 minutes', now() - interval '10 minutes'),
		       (200002, $2, 1001, 4593, -300, 'unknown', 'u-2', 'h', 300, 'timeout', now() - interval '10 minutes', now() - interval '10 minutes')`,
		uid1, uid2); err != nil {
		t.Fatal(err)
	}
	key1 := payment.ProcessorKey(uid1)
	proc := &fakeProcessor{
		executions: []map[string]any{{"seq": 1, "id": "pay_1", "idempotency_key": key1, "user_id": 1001,
			"amount": -500, "reference": "200001", "api": "proposed", "executed_at": "2026-01-01T00:00:00Z"}},
		resources: map[string]map[string]any{key1: {"id": "pay_1", "idempotency_key": key1,
			"user_id": 1001, "amount": -500, "status": "succeeded"}},
	}
	sim := proc.serve(t)

	r := run(t, env, "reconcile", "--processor-url", sim, "--dry-run")
	if r.code != 0 || strings.Count(r.stdout, "would resolve") != 2 {
		t.Fatalf("reconcile --dry-run: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	var unknown int
	_ = pool.QueryRow(ctx, `SELECT count(*) FROM payments WHERE status = 'unknown'`).Scan(&unknown)
	if unknown != 2 {
		t.Fatalf("dry run resolved payments: %d unknown left", unknown)
	}

	r = run(t, env, "reconcile", "--processor-url", sim, "--json")
	var rep struct {
		Succeeded, Failed, Left int
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); r.code != 0 || err != nil || rep.Succeeded != 1 || rep.Failed != 1 || rep.Left != 0 {
		t.Fatalf("reconcile: exit %d (%v)\n%s%s", r.code, err, r.stdout, r.stderr)
	}

	// Each resolution's event is in the outbox, for payments.events.
	rows, err := pool.Query(ctx, `SELECT topic, payload FROM outbox ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var topic string
		var payload []byte
		if err := rows.Scan(&topic, &payload); err != nil {
			t.Fatal(err)
		}
		var ev financev1.PaymentEvent
		if err := proto.Unmarshal(payload, &ev); err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%s %s %s user_seq>0:%v", topic, ev.GetEventId(), ev.GetPaymentUid(), ev.GetUserSeq() > 0))
	}
	want := []string{"payments.events 200001:succeeded " + uid1.String() + " user_seq>0:true",
		"payments.events 200002:failed " + uid2.String() + " user_seq>0:true"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("outbox:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// The ledger is consistent with the processor afterwards.
	if r := run(t, env, "verify", "--processor-url", sim); r.code != 0 {
		t.Errorf("verify after reconcile: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// A second pass changes nothing.
	r = run(t, env, "reconcile", "--processor-url", sim)
	if r.code != 0 || !strings.Contains(r.stdout, "unknown payments: 0") {
		t.Errorf("second reconcile: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}
