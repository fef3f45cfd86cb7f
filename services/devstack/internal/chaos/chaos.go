package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/finsvc/finance/pkg/kafka"

	"github.com/finsvc/finance/services/devstack/internal/stack"
)

// ErrViolations is returned by Main when the run found a violation.
var ErrViolations = errors.New("chaos run found violations")

// Main is `devstack chaos [flags]`. It returns ErrViolations when the report
// is not clean.
func Main(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := ParseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("chaos: %w", err)
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
	for _, k := range []string{"GATEWAY_ADDR", "SIM_ADDR", "DISPATCHER_OPS_ADDR", "RELAY_OPS_ADDR", "STATUS_OPS_ADDR"} {
		if getenv(k) == "" {
			a, err := freeAddrs(1)
			if err != nil {
				return stack.Config{}, err
			}
			free[k] = a
		}
	}
	if getenv("KAFKA_ADDR") == "" && getenv("KAFKA_BROKERS") == "" {
		a, err := freeAddrs(maxBrokers)
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

// freeAddrs returns a loopback address whose port and the n-1 after it
// were free a moment ago.
func freeAddrs(n int) (string, error) {
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", err
		}
		base := ln.Addr().(*net.TCPAddr).Port
		lns := []net.Listener{ln}
		ok := true
		for i := 1; i < n && ok; i++ {
			l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(base+i))
			if err != nil {
				ok = false
				break
			}
			lns = append(lns, l)
		}
		for _, l := range lns {
			l.Close()
		}
		if ok {
			return ln.Addr().String(), nil
		}
	}
	return "", fmt.Errorf("no %d consecutive free ports", n)
}

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
	// compare this run's traffic with this run's record.
	for _, p := range []string{"kafka", "logs", "processor-sim.jsonl"} {
		if err := os.RemoveAll(filepath.Join(scfg.StateDir, p)); err != nil {
			return nil, err
		}
	}
	controlAddr := ""
	if cfg.BrokerFaults && scfg.KafkaBrokers == "" {
		a, err := freeAddrs(1)
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
		Database:         "finance_chaos",
		DropDatabase:     true,
	}, out)
	if err != nil {
		return nil, err
	}
	defer st.Close()

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

	rep := &Report{Config: cfg, StartedAt: time.Now(), Kills: map[string]int{}, Faults: map[string]int{}}
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
	var wg sync.WaitGroup
	for _, s := range cfg.Kill {
		wg.Add(1)
		go func() { defer wg.Done(); ag.killer(chaosCtx, s) }()
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

	logf("traffic: %d payments over %d users at %g/s from %d clients; killing %s %d+ times each",
		cfg.Payments, cfg.Users, cfg.Rate, cfg.Clients, strings.Join(cfg.Kill, ", "), cfg.KillsPerService)
	trafficErr := tr.run(ctx)
	stopChaos()
	wg.Wait()
	rep.TrafficSeconds = time.Since(rep.StartedAt).Seconds()
	if trafficErr != nil {
		return nil, fmt.Errorf("traffic: %w", trafficErr)
	}
	logf("traffic done in %.0fs; removing faults, ending the outage, waiting for every service", rep.TrafficSeconds)
	ag.calm(ctx)
	for name, u := range st.HealthURLs() {
		if err := waitHealthy(ctx, ag.http, u, 2*time.Minute); err != nil {
			return nil, fmt.Errorf("%s did not come back: %w", name, err)
		}
	}
	for _, s := range st.Services {
		rep.Starts = append(rep.Starts, serviceStarts{Service: s, Starts: st.Starts(s)})
	}

	logf("draining: waiting until no payment is accepted or processing and the outbox is empty")
	drainStart := time.Now()
	if err := drain(ctx, pool, cfg.DrainTimeout, logf); err != nil {
		logf("%v", err)
		rep.DrainTimedOut = true
	}
	rep.DrainSeconds = time.Since(drainStart).Seconds()

	if err := reconcile(ctx, st, rep, logf); err != nil {
		return nil, err
	}
	if err := check(ctx, pool, st, tr, rep); err != nil {
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
