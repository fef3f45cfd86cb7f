package main_test

// The crash test of `make test`: a short chaos run. It starts the real
// pipeline as separate processes, sends 300 payments over 50 users as
// retrying clients, SIGKILLs every service of ours at least once in the
// middle of the traffic, injects broker faults and a short processor outage
// with the processor at small error, lost-reply and decline rates, then drains,
// reconciles and runs the invariant checker. It asserts counts only, never
// timings. `make chaos` is the long version.

import (
	"context"
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
	env := map[string]string{
		"STATE_DIR":        t.TempDir(),
		"BIN_DIR":          bin,
		"DATABASE_URL":     pgtest.NewDB(t),
		"KAFKA_PARTITIONS": "4",
	}
	scfg, err := chaos.StackConfig(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	cfg := chaos.DefaultConfig()
	cfg.Users, cfg.Payments, cfg.Balance = 50, 300, 20_000
	cfg.Rate, cfg.Clients = 10, 16
	cfg.KillsPerService = 1
	cfg.SimErrorRate, cfg.SimLostRate, cfg.SimDecline = 0.02, 0.01, 0.05
	cfg.Outage = 3 * time.Second
	cfg.FaultEvery = 2 * time.Second
	cfg.DrainTimeout = 3 * time.Minute

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
	for _, s := range chaos.Services {
		if rep.Kills[s] < 1 {
			t.Errorf("%s was never killed", s)
		}
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
