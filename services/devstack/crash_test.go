package main_test

// The crash test of `make test`: a short chaos run. It starts the real
// pipeline as separate processes, sends 300 payments over 50 users as
// retrying clients, SIGKILLs every service of ours at least once in the
// middle of the traffic, kills each consumer a second time while it rejoins
// its group (inside the rebalance, issue 10), injects broker faults and a
// short processor outage with the processor at small error, lost-reply and
// decline rates, then checks that every payment became final within the
// liveness window after the last kill, reconciles and runs the invariant
// checker. It asserts counts only, never timings. `make chaos` is the long
// version.

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/finsvc/finance/pkg/pgtest"
	"github.com/finsvc/finance/pkg/stacktest"
	"github.com/finsvc/finance/services/devstack/internal/chaos"
)

func TestCrashEveryServiceMidTrafficKeepsTheMoneyRight(t *testing.T) {
	t.Parallel()
	bin := stacktest.Binaries(t, services...)
	crashEveryServiceMidTraffic(t, map[string]string{
		"STATE_DIR":        t.TempDir(),
		"BIN_DIR":          bin,
		"DATABASE_URL":     pgtest.NewDB(t),
		"KAFKA_PARTITIONS": "4",
	})
}

// crashEveryServiceMidTraffic is the body of the crash test, against the
// PostgreSQL and Kafka env names: with KAFKA_BROKERS set it uses that
// cluster and injects no broker faults (only devkafka has them), as
// docker_test.go does against real Apache Kafka.
func crashEveryServiceMidTraffic(t *testing.T, env map[string]string) {
	t.Helper()
	scfg, err := chaos.StackConfig(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	cfg := chaos.DefaultConfig()
	cfg.Users, cfg.Payments, cfg.Balance = 50, 300, 20_000
	cfg.Rate, cfg.Clients = 10, 16
	cfg.KillsPerService = 1
	// The consumers' kill is followed by a quick one 0.2–1.5 s after the
	// restart, aimed inside the group's rebalance; no restart kills.
	cfg.QuickKills, cfg.QuickBurst, cfg.RestartKills = 1, 1, 0
	cfg.SimErrorRate, cfg.SimLostRate, cfg.SimDecline = 0.02, 0.01, 0.05
	cfg.Outage = 3 * time.Second
	cfg.FaultEvery = 2 * time.Second
	cfg.DrainTimeout = 3 * time.Minute
	// The clients' payments and the receiver's registration are checked
	// against docs/openapi.yaml, as the other end-to-end tests' requests
	// are (apiClient): under kills and faults too, every answer the
	// gateway gives must be one the document describes.
	contract, err := gatewayContract()
	if err != nil {
		t.Fatalf("docs/openapi.yaml: %v", err)
	}
	cfg.WrapAPITransport = func(rt http.RoundTripper) http.RoundTripper { return contract.RoundTripper(t, rt) }

	var out stacktest.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	rep, err := chaos.Run(ctx, cfg, scfg, &out)
	if err != nil {
		t.Fatalf("chaos run: %v\n%s", err, out.String())
	}
	if rep.Sent != cfg.Payments || rep.Accepted == 0 {
		t.Errorf("sent %d (want %d), accepted %d (want some)", rep.Sent, cfg.Payments, rep.Accepted)
	}
	for _, tg := range chaos.Targets {
		if rep.Kills[tg.Name] < 1 {
			t.Errorf("%s was never killed", tg.Name)
		}
	}
	if n := rep.KillsByKind["status-consumer"][chaos.KindQuick]; n < 1 {
		t.Errorf("status-consumer: %d quick kills, want 1", n)
	}
	if !rep.LivenessChecked || rep.NonFinalAtDeadline != 0 {
		t.Errorf("liveness: %d payments not final %v after the last kill (checked %t)", rep.NonFinalAtDeadline, cfg.Liveness, rep.LivenessChecked)
	}
	for _, c := range []struct {
		what string
		n    int64
	}{
		{"lost", rep.Lost}, {"paid twice", rep.PaidTwice}, {"balance mismatches", rep.BalanceMismatches},
		{"overdrafts", rep.Overdrafts}, {"stuck", rep.Stuck}, {"unknown after reconcile", rep.Unknown},
		{"idempotency violations", rep.IdempotencyViolations}, {"unexpected answers", int64(rep.Unexpected)},
	} {
		if c.n != 0 {
			t.Errorf("%s = %d, want 0", c.what, c.n)
		}
	}
	inside := 0
	for _, k := range rep.KillLog {
		if k.InRebalance {
			inside++
		}
	}
	t.Logf("%d kills (%d inside a rebalance), drain after the last kill %.1fs, longest stall %.0fs, %d not final at the deadline",
		len(rep.KillLog), inside, rep.DrainAfterLastKill, rep.LongestStall, rep.NonFinalAtDeadline)
	if rep.Verify == nil || !rep.Verify.OK() {
		t.Errorf("the invariant checker found violations")
	}
	if t.Failed() || !rep.OK() {
		t.Errorf("chaos report:\n%s", tail(out.String(), 120))
	}
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
