package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/finsvc/finance/pkg/entry"
	"github.com/finsvc/finance/pkg/freeport"
	"github.com/finsvc/finance/pkg/kafka"
	"github.com/finsvc/finance/pkg/postgres"

	"github.com/finsvc/finance/services/devstack/internal/stack"
)

// ErrViolations is returned by Command when the run found a violation.
var ErrViolations = errors.New("chaos run found violations")

// Command is `devstack chaos [flags]`. It returns ErrViolations when the
// report is not clean.
func Command(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := ParseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return &entry.UsageError{Err: fmt.Errorf("chaos: %w", err)}
	}
	scfg, err := StackConfig(getenv)
	if err != nil {
		return err
	}
	rep, err := Run(ctx, cfg, scfg, stdout)
	if err != nil {
		return err
	}
	if !rep.OK() {
		return ErrViolations
	}
	return nil
}

// StackConfig is the stack configuration of a chaos run: the environment as
// `devstack run` reads it, but with the state in .run/chaos and every
// address not set explicitly on a free port, so a run does not collide with
// `make run`.
func StackConfig(getenv func(string) string) (stack.Config, error) {
	free := map[string]string{}
	for _, k := range []string{"GATEWAY_ADDR", "SIM_ADDR", "GATEWAY_OPS_ADDR", "DISPATCHER_OPS_ADDR", "RELAY_OPS_ADDR", "STATUS_OPS_ADDR",
		"WEBHOOK_OPS_ADDR", "RECONCILER_METRICS_ADDR"} {
		if getenv(k) == "" {
			a, err := freeport.Addrs(1)
			if err != nil {
				return stack.Config{}, err
			}
			free[k] = a
		}
	}
	if getenv("KAFKA_ADDR") == "" && getenv("KAFKA_BROKERS") == "" {
		a, err := freeport.Addrs(maxBrokers)
		if err != nil {
			return stack.Config{}, err
		}
		free["KAFKA_ADDR"] = a
	}
	if getenv("STATE_DIR") == "" {
		free["STATE_DIR"] = filepath.Join(".run", "chaos")
	}
	return stack.LoadConfig(func(k string) string {
		if v, ok := free[k]; ok {
			return v
		}
		return getenv(k)
	})
}

// maxBrokers is how many consecutive ports are kept free for devkafka.
const maxBrokers = 5

// Run starts the stack, drives one chaos run and checks it. The error is for
// a run that could not be carried out; violations are in the report.
func Run(ctx context.Context, cfg Config, scfg stack.Config, out io.Writer) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Brokers > maxBrokers && scfg.KafkaBrokers == "" {
		return nil, fmt.Errorf("brokers %d: at most %d", cfg.Brokers, maxBrokers)
	}
	// A fresh broker, processor record and logs each run: the checks
	// compare this run's traffic with this run's record. Not those of a
	// stack still running on the same state directory.
	if err := stack.CheckStateDirFree(scfg.StateDir); err != nil {
		return nil, err
	}
	for _, p := range []string{"kafka", "logs", "processor-sim.jsonl"} {
		if err := os.RemoveAll(filepath.Join(scfg.StateDir, p)); err != nil {
			return nil, err
		}
	}
	controlAddr := ""
	if cfg.BrokerFaults && scfg.KafkaBrokers == "" {
		a, err := freeport.Addrs(1)
		if err != nil {
			return nil, err
		}
		controlAddr = a
	}
	simEnv := []string{
		"SIM_ERROR_RATE=" + strconv.FormatFloat(cfg.SimErrorRate, 'f', -1, 64),
		"SIM_LOST_RESPONSE_RATE=" + strconv.FormatFloat(cfg.SimLostRate, 'f', -1, 64),
		"SIM_DECLINE_RATE=" + strconv.FormatFloat(cfg.SimDecline, 'f', -1, 64),
		// A killed simulator keeps its record and idempotency keys.
		"SIM_DATA_FILE=" + filepath.Join(scfg.StateDir, "processor-sim.jsonl"),
	}
	if cfg.SimSeed != 0 {
		simEnv = append(simEnv, "SIM_SEED="+strconv.FormatInt(cfg.SimSeed, 10))
	}
	logf := func(format string, args ...any) {
		fmt.Fprintf(out, "chaos: "+format+"\n", args...)
	}
	logf("starting the stack (state in %s, service logs in %s)", scfg.StateDir, filepath.Join(scfg.StateDir, "logs"))
	st, err := stack.Start(ctx, scfg, stack.Options{
		Quiet:            true,
		KafkaBrokers:     cfg.Brokers,
		KafkaControlAddr: controlAddr,
		SimEnv:           simEnv,
		Env:              webhookEnv,
		Database:         "finance_chaos",
		DropDatabase:     true,
	}, out)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	// Every run also checks the webhooks: the delivery service must run.
	if !slices.Contains(st.Services, webhookService) {
		return nil, fmt.Errorf("%s is not running: build bin/%s (make build)", webhookService, webhookService)
	}
	recv, err := startReceiver(ctx, cfg.apiClient(0, http.DefaultTransport), st.GatewayURL)
	if err != nil {
		return nil, err
	}
	defer recv.close()
	logf("webhook receiver registered (endpoint %s, every event type of every user)", recv.endpoint)

	logf("seeding %d users from %d with %d each", cfg.Users, cfg.StartID, cfg.Balance)
	if err := st.Financectl(ctx, io.Discard, "seed", "--users", strconv.Itoa(cfg.Users),
		"--start-id", strconv.FormatInt(cfg.StartID, 10), "--balance", strconv.FormatInt(cfg.Balance, 10)); err != nil {
		return nil, err
	}
	pool, err := pgxpool.New(ctx, st.DatabaseURL)
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	// The checks compare this run's traffic with this run's processor
	// record: a database that already holds payments (a DATABASE_URL used
	// by an earlier run) would show them as succeeded but never executed.
	var earlier int64
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM payments WHERE source = 'api'`).Scan(&earlier); err != nil {
		return nil, err
	}
	if earlier > 0 {
		return nil, fmt.Errorf("database %s already holds %d API payments: give the run a fresh database",
			postgres.RedactURL(st.DatabaseURL), earlier)
	}

	seed := cfg.KillSeed
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	plan := newPlan(cfg, rand.New(rand.NewPCG(uint64(seed), 1)))
	rep := &Report{Config: cfg, Kills: map[string]int{}, KillsByKind: map[string]map[string]int{},
		KillPlan: plan.Want(), KillSeed: seed, Faults: map[string]int{}, DrainAfterLastKill: -1}
	tr := newTraffic(cfg, st.GatewayURL)
	chaosCtx, stopChaos := context.WithCancel(ctx)
	defer stopChaos()
	ag := &agents{cfg: cfg, st: st, tr: tr, rep: rep, logf: logf, http: &http.Client{Timeout: 5 * time.Second}}
	if controlAddr != "" {
		ag.control = "http://" + controlAddr
	}
	kcl, err := kafka.NewClient(strings.Split(st.Brokers, ","), slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, err
	}
	defer kcl.Close()
	ag.admin = kadm.NewClient(kcl)
	ag.watch = newProcWatch(st)
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go ag.watch.run(watchCtx, TargetNames(Targets))

	logf("kill plan (%s, kill seed %d):", cfg.Schedule, seed)
	for _, l := range plan.Lines() {
		logf("  %s", l)
	}
	logf("traffic: %d payments over %d users at %g/s from %d clients", cfg.Payments, cfg.Users, cfg.Rate, cfg.Clients)
	rep.StartedAt = time.Now()
	var wg, seqWG sync.WaitGroup
	for i, name := range cfg.Kill {
		steps, ok := plan.PerService[name]
		if !ok {
			continue
		}
		t, _ := targetByName(name)
		rng := rand.New(rand.NewPCG(uint64(seed), uint64(i+2)))
		wg.Add(1)
		go func() { defer wg.Done(); ag.killer(chaosCtx, t, steps, rng) }()
	}
	if len(plan.Sequence) > 0 {
		// The sequence runs to its end even when the traffic ends first:
		// it is bounded by its gaps.
		seqWG.Add(1)
		go func() { defer seqWG.Done(); ag.sequence(ctx, plan.Sequence) }()
	}
	if ag.control != "" {
		wg.Add(1)
		go func() { defer wg.Done(); ag.faults(chaosCtx) }()
	}
	if cfg.Outage > 0 {
		wg.Add(1)
		go func() { defer wg.Done(); ag.outage(chaosCtx) }()
	}
	wg.Add(1)
	go func() { defer wg.Done(); ag.progress(chaosCtx, pool) }()

	trafficErr := tr.run(ctx)
	rep.TrafficEnd = time.Now()
	rep.TrafficSeconds = rep.TrafficEnd.Sub(rep.StartedAt).Seconds()
	if trafficErr != nil {
		stopChaos()
		wg.Wait()
		seqWG.Wait()
		return nil, fmt.Errorf("traffic: %w", trafficErr)
	}
	if len(plan.Sequence) > 0 {
		logf("traffic done in %.0fs; waiting for the kill sequence to end", rep.TrafficSeconds)
	}
	seqWG.Wait()
	stopChaos()
	wg.Wait()
	logf("traffic done in %.0fs, kills done; removing faults, ending the outage", rep.TrafficSeconds)
	ag.calm(ctx)

	ag.mu.Lock()
	rep.LivenessDeadline = later(rep.LastKill, rep.TrafficEnd).Add(cfg.Liveness)
	ag.mu.Unlock()
	logf("draining: every payment must be final by %s (%v after the last kill or the end of the traffic)",
		rep.LivenessDeadline.Format("15:04:05"), cfg.Liveness)
	if err := settle(ctx, pool, rep, &ag.stall, rep.TrafficEnd.Add(cfg.DrainTimeout), logf); err != nil {
		return nil, err
	}
	rep.LongestStall = ag.stall.longest.Seconds()
	if !ag.stall.endedAt.IsZero() {
		rep.LongestStallEnd = ag.stall.endedAt.Sub(rep.StartedAt).Seconds()
	}
	rep.DrainSeconds = time.Since(rep.TrafficEnd).Seconds()
	if !rep.AllFinalAt.IsZero() && !rep.LastKill.IsZero() {
		// 0 when every payment was final before the last kill.
		rep.DrainAfterLastKill = max(rep.AllFinalAt.Sub(rep.LastKill).Seconds(), 0)
	}
	for name, u := range st.HealthURLs() {
		if err := waitHealthy(ctx, ag.http, u, 2*time.Minute); err != nil {
			return nil, fmt.Errorf("%s did not come back: %w", name, err)
		}
	}
	for _, s := range st.Services {
		rep.Starts = append(rep.Starts, serviceStarts{Service: s, Starts: st.Starts(s)})
	}

	if err := reconcile(ctx, st, rep, logf); err != nil {
		return nil, err
	}
	if err := check(ctx, pool, st, tr, rep); err != nil {
		return nil, err
	}
	if err := checkWebhooks(ctx, pool, strings.Split(st.Brokers, ","), recv, rep, cfg.DrainTimeout, logf); err != nil {
		return nil, err
	}
	rep.FinishedAt = time.Now()
	rep.WriteText(out)
	if cfg.JSONPath != "" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(cfg.JSONPath, append(b, '\n'), 0o644); err != nil {
			return nil, err
		}
	}
	return rep, nil
}

// waitHealthy polls u until it answers 200.
func waitHealthy(ctx context.Context, c *http.Client, u string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if healthy(ctx, c, u) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not healthy after %v", u, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func healthy(ctx context.Context, c *http.Client, u string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return false
	}
	resp, err := c.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}
