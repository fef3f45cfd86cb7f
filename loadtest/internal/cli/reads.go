package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/finsvc/finance/loadtest/internal/hostcpu"
	"github.com/finsvc/finance/loadtest/internal/reads"
	"github.com/finsvc/finance/loadtest/internal/report"
	"github.com/finsvc/finance/loadtest/internal/target"
	"github.com/finsvc/finance/pkg/simclient"
)

// scenarioArg returns the --scenario of args, if any.
func scenarioArg(args []string) string {
	for i, a := range args {
		a = strings.TrimLeft(a, "-")
		if v, ok := strings.CutPrefix(a, "scenario="); ok {
			return v
		}
		if a == "scenario" && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

type readOptions struct {
	cfg         reads.Config
	target      string
	databaseURL string
	simURL      string
	out         string
	quiet       bool
	metrics     string
	localCPU    string
	localRSS    string
	targetPID   int
	baseline    string
	rate        float64
}

func readFlags(getenv func(string) string, name string) (*flag.FlagSet, *readOptions) {
	o := &readOptions{cfg: reads.Defaults(name)}
	fs := flag.NewFlagSet("loadtest run (reads)", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&o.cfg.Scenario, "scenario", name, "read-users, read-max or sse-latency")
	fs.StringVar(&o.target, "target", "pipeline", "pipeline (the gateway) or legacy (the as-is service: feeds only)")
	fs.StringVar(&o.cfg.URL, "url", "", "target base `URL` (default "+defaultPipelineURL+" or "+defaultLegacyURL+")")
	fs.StringVar(&o.databaseURL, "database-url", "", "the target's PostgreSQL (default $DATABASE_URL or $LEGACY_DATABASE_URL, as run)")
	fs.StringVar(&o.simURL, "processor-url", envOr(getenv, "PROCESSOR_URL", defaultSimURL), "the simulator (sse-latency)")
	fs.IntVar(&o.cfg.Population, "population", o.cfg.Population, "seeded users the reads pick from, --first-user onwards")
	fs.Int64Var(&o.cfg.FirstUser, "first-user", DefaultFirstUser, "first seeded user `id`")
	fs.IntVar(&o.cfg.VUs, "users", o.cfg.VUs, "read-users: virtual users, each reading once every --think")
	fs.DurationVar(&o.cfg.Think, "think", o.cfg.Think, "read-users: think time per virtual user")
	fs.IntVar(&o.cfg.Conns, "conns", o.cfg.Conns, "read-max: connections, each reading again as soon as answered")
	fs.DurationVar(&o.cfg.Duration, "duration", o.cfg.Duration, "how long the reads run")
	fs.Float64Var(&o.cfg.BalanceRatio, "balance-ratio", o.cfg.BalanceRatio, "share of reads that are balances (pipeline)")
	fs.IntVar(&o.cfg.LongPolls, "long-polls", o.cfg.LongPolls, "long-polls (wait=60s) held open during the run (pipeline)")
	fs.IntVar(&o.cfg.Streams, "streams", o.cfg.Streams, "SSE streams held open during the run (pipeline)")
	fs.Float64Var(&o.rate, "rate", 50, "sse-latency: credits per second to the streams' users")
	fs.DurationVar(&o.cfg.Timeout, "timeout", o.cfg.Timeout, "per-read timeout")
	fs.StringVar(&o.metrics, "metrics", "", "extra `name=url,...` of /metrics whose process CPU to report")
	fs.StringVar(&o.localCPU, "local-cpu", "", "`names,...` of local processes whose CPU to report (e.g. postgres)")
	fs.StringVar(&o.localRSS, "local-rss", "", "command `name` of the target's process on this machine (gateway, legacy): "+
		"its peak VmRSS sampled once a second and VmHWM, from /proc")
	fs.IntVar(&o.targetPID, "target-pid", 0, "the target's `pid`, for RSS (instead of --local-rss)")
	fs.StringVar(&o.baseline, "baseline", "", "an earlier read run's `directory` to compare with: the as-is service's "+
		"(CPU per read, 3× throughput) or the same target's with another --population (p99 within 25%)")
	fs.StringVar(&o.out, "out", "", "output `directory` (default loadtest/out/<scenario>-<target>-<time>)")
	fs.BoolVar(&o.quiet, "quiet", false, "no progress line")
	return fs, o
}

func parseReads(args []string, env Env) (*readOptions, error) {
	fs, o := readFlags(env.Getenv, scenarioArg(args))
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(env.Stdout)
			fs.PrintDefaults()
			return nil, nil
		}
		return nil, usagef("%v (see loadtest help run)", err)
	}
	if fs.NArg() > 0 {
		return nil, usagef("unexpected argument %q", fs.Arg(0))
	}
	var problems []string
	kind, err := target.ParseKind(o.target)
	if err != nil {
		problems = append(problems, "--target: "+err.Error())
	}
	o.cfg.Kind = kind
	if kind == target.Legacy {
		// The as-is service has neither route; unless asked, leave them out.
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if !set["long-polls"] {
			o.cfg.LongPolls = 0
		}
		if !set["streams"] {
			o.cfg.Streams = 0
		}
	}
	if o.cfg.URL == "" {
		o.cfg.URL = map[bool]string{true: defaultLegacyURL, false: defaultPipelineURL}[kind == target.Legacy]
	}
	if o.databaseURL == "" {
		o.databaseURL = envOr(env.Getenv, "DATABASE_URL", defaultPipelineDB)
		if kind == target.Legacy {
			o.databaseURL = envOr(env.Getenv, "LEGACY_DATABASE_URL", defaultLegacyDB)
		}
	}
	if pu, err := url.Parse(o.cfg.URL); err != nil || pu.Host == "" {
		problems = append(problems, fmt.Sprintf("--url %q: want http://host:port", o.cfg.URL))
	}
	if o.localRSS != "" && o.targetPID != 0 {
		problems = append(problems, "give --local-rss or --target-pid, not both")
	}
	if err := o.cfg.Validate(); err != nil {
		problems = append(problems, strings.Split(err.Error(), "\n")...)
	}
	if len(problems) > 0 {
		return nil, usagef("%s", strings.Join(problems, "; "))
	}
	o.cfg.Secret = []byte(jwtSecret(env))
	return o, nil
}

// readsCommand runs a read scenario: preflight, the load with the target's
// CPU, RSS and database counters around it, the goals, the report.
func readsCommand(ctx context.Context, args []string, env Env) error {
	o, err := parseReads(args, env)
	if o == nil || err != nil {
		return err
	}
	cfg := &o.cfg
	var base *reads.Report
	if o.baseline != "" {
		if base, err = reads.ReadReport(o.baseline); err != nil {
			return usagef("--baseline: %v", err)
		}
	}
	pctx, cancel := context.WithTimeout(ctx, preflightTimeout)
	defer cancel()
	tc := target.New(cfg.Kind, cfg.URL, 4, cfg.Timeout)
	defer tc.Close()
	if err := tc.Ready(pctx); err != nil {
		return err
	}
	pool, err := connect(pctx, o.databaseURL)
	if err != nil {
		return fmt.Errorf("the %s database (--database-url) is unreachable: %w", cfg.Kind, err)
	}
	defer pool.Close()
	last := cfg.FirstUser + int64(cfg.Population) - 1
	if err := checkSeeded(pctx, pool, cfg.Kind, cfg.FirstUser, last); err != nil {
		return err
	}
	if cfg.LongPolls > 0 {
		rows, err := pool.Query(pctx, `SELECT id, user_id FROM payments WHERE user_id BETWEEN $1 AND $2
			ORDER BY id DESC LIMIT $3`, cfg.FirstUser, last, cfg.LongPolls)
		if err != nil {
			return fmt.Errorf("the payments to long-poll: %w", err)
		}
		for rows.Next() {
			var p reads.PaymentRef
			if err := rows.Scan(&p.ID, &p.UserID); err != nil {
				return err
			}
			cfg.Waits = append(cfg.Waits, p)
		}
		if rows.Close(); rows.Err() != nil || len(cfg.Waits) == 0 {
			return fmt.Errorf("no payments of users %d..%d to long-poll (seed with --payments-per-user): %v", cfg.FirstUser, last, rows.Err())
		}
	}
	pid := o.targetPID
	if o.localRSS != "" {
		if pid, err = reads.PIDByName("/proc", o.localRSS); err != nil {
			return fmt.Errorf("--local-rss: %w", err)
		}
	}
	cancel()

	ro := &runOptions{kind: cfg.Kind, url: cfg.URL, simURL: o.simURL, metricURLs: map[string]string{}}
	if err := addMetrics(ro, o.metrics, o.localCPU); err != nil {
		return err
	}
	var line func(time.Duration, int64, float64)
	if !o.quiet {
		line = func(el time.Duration, n int64, p99 float64) {
			fmt.Fprintf(env.Progress, "\r%s→%s %5.0fs %9d reads p99 %7.1f ms ", cfg.Scenario, cfg.Kind, el.Seconds(), n, p99)
		}
	}
	cfg.Progress = line
	fmt.Fprintf(env.Stderr, "loadtest: %s→%s: %d users seeded from %d; target %s\n", cfg.Scenario, cfg.Kind, cfg.Population, cfg.FirstUser, cfg.URL)

	cpuURLs := ro.metricURLs
	cpuURLs[map[bool]string{true: "legacy", false: "gateway"}[cfg.Kind == target.Legacy]] = strings.TrimRight(cfg.URL, "/") + "/metrics"
	cpuBefore, cpuErrs := report.ReadCPU(ctx, cpuURLs)
	steal := hostcpu.NewMeter()
	db := reads.StartDB(ctx, pool)
	var rss *reads.RSSSampler
	if pid > 0 {
		rss = reads.SampleRSS("/proc", pid)
	}
	rep := &reads.Report{Scenario: cfg.Scenario, Target: string(cfg.Kind), URL: cfg.URL,
		Command: "loadtest run " + strings.Join(args, " "), Settings: reads.SettingsOf(*cfg)}
	var res *reads.Result
	var runErr error
	if cfg.Scenario == reads.SSELatency {
		sim := simclient.New(o.simURL)
		st, err := sim.Stats(ctx)
		if err != nil {
			return fmt.Errorf("the simulator at %s: %w", o.simURL, err)
		}
		payer := target.New(cfg.Kind, cfg.URL, 64, cfg.Timeout)
		defer payer.Close()
		rep.Settings.CreditRate = o.rate
		res, rep.SSE, runErr = reads.RunSSE(ctx, *cfg, reads.SSEConfig{Rate: o.rate, RunID: newRunID(), Pay: payer.Pay,
			Grace: 30 * time.Second,
			Executions: func(ctx context.Context) ([]simclient.Execution, error) {
				return sim.ExecutionsAfter(ctx, st.ExecutionsRecorded)
			}})
	} else {
		res, runErr = reads.Run(ctx, *cfg)
	}
	if line != nil {
		fmt.Fprintln(env.Progress)
	}
	if res == nil {
		return runErr
	}
	cpuAfter, errsAfter := report.ReadCPU(context.WithoutCancel(ctx), cpuURLs)
	for k, v := range errsAfter {
		cpuErrs[k] = v
	}
	if share, err := steal.Next(); err == nil {
		rep.MachineSteal = &share
	}
	rep.Result = res
	rep.CPU = report.CPUUsed(cpuURLs, cpuBefore, cpuAfter, cpuErrs)
	rep.DB = db.Stop(context.WithoutCancel(ctx))
	if rss != nil {
		r := rss.Stop()
		rep.RSS = &r
	}
	rep.Machine = report.ThisMachine()
	rep.Judge(base)
	dir := o.out
	if dir == "" {
		dir = defaultOutDir(cfg.Scenario, string(cfg.Kind), res.StartedAt)
	}
	if err := rep.Write(dir); err != nil {
		return fmt.Errorf("write the report to %s: %w", dir, err)
	}
	if env.OnReads != nil {
		env.OnReads(rep, dir)
	}
	fmt.Fprintf(env.Stdout, "%s → %s: %.1f reads/s, p50 %.1f ms, p99 %.1f ms, p99.9 %.1f ms, errors %v\n",
		rep.Scenario, rep.Target, res.PerSecond, res.Reads.P50, res.Reads.P99, res.Reads.P999, res.Errors)
	for _, g := range rep.Goals {
		m := "met"
		if !g.Met {
			m = "NOT met"
		}
		fmt.Fprintf(env.Stdout, "  goal %s: want %s, got %s: %s\n", g.Name, g.Want, g.Got, m)
	}
	fmt.Fprintf(env.Stdout, "  report: %s\n", filepath.Join(dir, "summary.md"))
	if runErr != nil {
		return fmt.Errorf("interrupted: %w", runErr)
	}
	return nil
}

// addMetrics reads --metrics and --local-cpu into o.metricURLs.
func addMetrics(o *runOptions, metrics, localCPU string) error {
	var problems []string
	for _, kv := range strings.Split(metrics, ",") {
		if kv = strings.TrimSpace(kv); kv == "" {
			continue
		}
		name, u, ok := strings.Cut(kv, "=")
		if pu, err := url.Parse(u); !ok || name == "" || err != nil || pu.Host == "" {
			problems = append(problems, fmt.Sprintf("--metrics %q: want name=http://host:port/metrics", kv))
			continue
		}
		o.metricURLs[name] = u
	}
	for _, name := range strings.Split(localCPU, ",") {
		if name = strings.TrimSpace(name); name == "" {
			continue
		}
		if strings.ContainsAny(name, "=/ ") {
			problems = append(problems, fmt.Sprintf("--local-cpu %q: want a command name such as postgres", name))
			continue
		}
		o.metricURLs[name] = report.ProcPrefix + name
	}
	if len(problems) > 0 {
		return usagef("%s", strings.Join(problems, "; "))
	}
	return nil
}
