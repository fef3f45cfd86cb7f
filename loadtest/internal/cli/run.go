package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/finsvc/finance/loadtest/internal/check"
	"github.com/finsvc/finance/loadtest/internal/loadgen"
	"github.com/finsvc/finance/loadtest/internal/progress"
	"github.com/finsvc/finance/loadtest/internal/report"
	"github.com/finsvc/finance/loadtest/internal/scenario"
	"github.com/finsvc/finance/loadtest/internal/target"
	"github.com/finsvc/finance/pkg/auth"
	"github.com/finsvc/finance/pkg/postgres"
	"github.com/finsvc/finance/pkg/simclient"
)

// Defaults of the run flags.
const (
	defaultPipelineURL = "http://127.0.0.1:8080"
	defaultLegacyURL   = "http://127.0.0.1:8070"
	defaultSimURL      = "http://127.0.0.1:8090"
	defaultPipelineDB  = postgres.DefaultURL
	// defaultLegacyDB is legacy's own default (services/legacy's
	// DefaultDatabaseURL, in an internal package the load test cannot import).
	defaultLegacyDB = "postgres://postgres@127.0.0.1:5432/finance_legacy?sslmode=disable"
	// DefaultFirstUser is where financectl's and legacy's bulk seeds start.
	DefaultFirstUser = 1_000_000
)

// preflightTimeout bounds every check before the load starts, so an
// unreachable target stops the run at once instead of hanging.
const preflightTimeout = 5 * time.Second

type runOptions struct {
	scenario     string
	target       string
	url          string
	simURL       string
	databaseURL  string
	out          string
	firstUser    int64
	timeout      time.Duration
	drainTimeout time.Duration
	maxConns     int
	quiet        bool
	cpuProfile   string
	metrics      string
	localCPU     string
	ov           scenario.Overrides

	// Set by parseRun from the flags.
	sc         scenario.Scenario
	kind       target.Kind
	metricURLs map[string]string // name → /metrics URL or report.ProcPrefix + command
	secret     string
}

func runFlags(getenv func(string) string) (*flag.FlagSet, *runOptions) {
	o := &runOptions{}
	fs := flag.NewFlagSet("loadtest run", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&o.scenario, "scenario", "", "scenario `name`: "+strings.Join(scenario.Names(), ", ")+" (required)")
	fs.StringVar(&o.target, "target", "pipeline", "system under test: pipeline (the gateway) or legacy (the as-is service)")
	fs.StringVar(&o.url, "url", "", "target base `URL` (default "+defaultPipelineURL+" for pipeline, "+defaultLegacyURL+" for legacy)")
	fs.StringVar(&o.simURL, "processor-url", envOr(getenv, "PROCESSOR_URL", defaultSimURL), "processor simulator base `URL` (env PROCESSOR_URL)")
	fs.StringVar(&o.databaseURL, "database-url", "", "the target's PostgreSQL, read by the checker (default $DATABASE_URL or "+
		defaultPipelineDB+" for pipeline, $LEGACY_DATABASE_URL or "+defaultLegacyDB+" for legacy)")
	fs.StringVar(&o.out, "out", "", "output `directory` (default loadtest/out/<scenario>-<target>-<time>, or out/... outside the repository root)")
	fs.Int64Var(&o.firstUser, "first-user", DefaultFirstUser, "first user `id`; users are first..first+users-1, seeded beforehand")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Second, "per-request timeout")
	fs.DurationVar(&o.drainTimeout, "drain-timeout", 0, "how long to wait for the backlog after the load (0: 60s + 2 × payments / L)")
	fs.IntVar(&o.maxConns, "max-conns", 10_000, "most connections to the target at once (requests beyond wait, their latency still counts)")
	fs.BoolVar(&o.quiet, "quiet", false, "no progress line")
	fs.StringVar(&o.metrics, "metrics", "", "extra `name=url,...` of Prometheus /metrics whose process CPU to report (the target's and the simulator's are always read), "+
		"e.g. dispatcher=http://127.0.0.1:9101/metrics,status-consumer=http://127.0.0.1:9103/metrics,outbox-relay=http://127.0.0.1:9102/metrics")
	fs.StringVar(&o.localCPU, "local-cpu", "", "`names,...` of processes on this machine without a /metrics (e.g. postgres,devkafka) whose CPU to report, "+
		"summed over every process of that command name, from /proc (Linux); a process that exits during the run is left out, so it is a lower bound")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write the generator's own CPU profile to `file` (to tell its limits from the target's)")
	fs.IntVar(&o.ov.Users, "users", 0, "concurrent virtual users, each with its own token (default: the scenario's)")
	fs.Float64Var(&o.ov.Rate, "rate", 0, "arrival `rate` in requests per second, all users together (open model)")
	fs.DurationVar(&o.ov.Think, "think", 0, "think time per user between requests; sets rate = users / think")
	fs.DurationVar(&o.ov.Duration, "duration", 0, "how long requests arrive")
	fs.Func("read-ratio", "share of requests that are feed reads, 0..1 (the rest are payments)", func(s string) error {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return fmt.Errorf("want a number 0..1")
		}
		o.ov.ReadRatio, o.ov.ReadRatioSet = v, true
		return nil
	})
	fs.DurationVar(&o.ov.OutageAt, "outage-at", 0, "start a processor outage this long after the start")
	fs.DurationVar(&o.ov.OutageDuration, "outage-duration", 0, "length of the processor outage")
	fs.Func("pollers", "clients polling every accepted payment's status URL about once a second until it is final, "+
		"each with its own connection (pipeline only; default: the scenario's, 16 for burst-poll, else 0)", func(s string) error {
		v, err := strconv.Atoi(s)
		if err != nil {
			return fmt.Errorf("want a whole number")
		}
		o.ov.Pollers, o.ov.PollersSet = v, true
		return nil
	})
	return fs, o
}

func envOr(getenv func(string) string, key, def string) string {
	if v := strings.TrimSpace(getenv(key)); v != "" {
		return v
	}
	return def
}

// runCommand runs one load test, in its steps: the flags, the preflight
// (every dependency answers), the checker of the target, the load with
// its CPU readings, and the verdict.
func runCommand(ctx context.Context, args []string, env Env) error {
	o, err := parseRun(args, env)
	if o == nil || err != nil {
		return err // nil for --help
	}
	p, err := preflight(ctx, o)
	if err != nil {
		return err
	}
	defer p.close()

	runID := newRunID()
	opts := loadgen.Options{
		RunID: runID, Workload: p.workload, Target: p.target, Sim: p.sim, FirstUser: o.firstUser, Tokens: p.tokens,
		ExecBaseline: p.stats.ExecutionsRecorded, DrainTimeout: o.drainTimeout,
		Workers: o.maxConns, Poller: p.poller,
	}
	if err := setChecker(ctx, &opts, o, p); err != nil {
		return err
	}
	res, cpu, runErr := runLoad(ctx, o, p, &opts, env)
	if res == nil {
		return runErr
	}
	return judge(ctx, args, o, p, res, cpu, runErr, env)
}

// parseRun reads and checks the run flags, reporting every problem at
// once; it returns nil options after printing the help.
func parseRun(args []string, env Env) (*runOptions, error) {
	fs, o := runFlags(env.Getenv)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printRunUsage(env.Stdout, fs)
			return nil, nil
		}
		return nil, usagef("%v (see loadtest help run)", err)
	}
	if fs.NArg() > 0 {
		return nil, usagef("unexpected argument %q (see loadtest help run)", fs.Arg(0))
	}
	var problems []string
	if o.scenario == "" {
		problems = append(problems, "--scenario is required: one of "+strings.Join(scenario.Names(), ", "))
	}
	sc, scErr := scenario.Lookup(o.scenario)
	if o.scenario != "" && scErr != nil {
		problems = append(problems, scErr.Error())
	}
	o.sc = sc
	maxConnsSet := false
	fs.Visit(func(f *flag.Flag) { maxConnsSet = maxConnsSet || f.Name == "max-conns" })
	if !maxConnsSet && sc.Conns > 0 {
		o.maxConns = sc.Conns
	}
	kind, err := target.ParseKind(o.target)
	if err != nil {
		problems = append(problems, "--target: "+err.Error())
	}
	o.kind = kind
	if kind == target.Legacy && ((o.ov.PollersSet && o.ov.Pollers > 0) || (!o.ov.PollersSet && sc.Pollers > 0)) {
		problems = append(problems, "status polling needs --target pipeline: the as-is service answers a payment "+
			"synchronously and has no status to poll (--pollers 0 runs the same load without polling)")
	}
	if o.url == "" {
		o.url = defaultPipelineURL
		if kind == target.Legacy {
			o.url = defaultLegacyURL
		}
	}
	if o.databaseURL == "" {
		o.databaseURL = envOr(env.Getenv, "DATABASE_URL", defaultPipelineDB)
		if kind == target.Legacy {
			o.databaseURL = envOr(env.Getenv, "LEGACY_DATABASE_URL", defaultLegacyDB)
		}
	}
	for name, u := range map[string]string{"--url": o.url, "--processor-url": o.simURL} {
		if pu, err := url.Parse(u); err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			problems = append(problems, fmt.Sprintf("%s %q: want http://host:port", name, u))
		}
	}
	if o.firstUser < 1 {
		problems = append(problems, "--first-user: want a positive user id")
	}
	if o.timeout <= 0 {
		problems = append(problems, "--timeout: want more than 0")
	}
	if o.maxConns < 1 {
		problems = append(problems, "--max-conns: want at least 1")
	}
	o.metricURLs = map[string]string{}
	for _, kv := range strings.Split(o.metrics, ",") {
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
	for _, name := range strings.Split(o.localCPU, ",") {
		if name = strings.TrimSpace(name); name == "" {
			continue
		}
		if strings.ContainsAny(name, "=/ ") {
			problems = append(problems, fmt.Sprintf("--local-cpu %q: want a command name such as postgres", name))
			continue
		}
		o.metricURLs[name] = report.ProcPrefix + name
	}
	if o.drainTimeout < 0 {
		problems = append(problems, "--drain-timeout: want 0 or more")
	}
	// Check the workload's shape before touching the network; the
	// processor's limit only scales the rate.
	if scErr == nil {
		if _, werr := scenario.Resolve(sc, o.ov, 300); werr != nil {
			problems = append(problems, strings.Split(werr.Error(), "\n")...)
		}
	}
	if len(problems) > 0 {
		return nil, usagef("%s", strings.Join(problems, "; "))
	}
	o.secret = jwtSecret(env)
	return o, nil
}

// jwtSecret is the HS256 secret the virtual users' tokens are signed
// with: AUTH_JWT_SECRET, or the dev secret of dev mode when it is unset.
func jwtSecret(env Env) string {
	if s := env.Getenv("AUTH_JWT_SECRET"); s != "" {
		return s
	}
	return auth.DevSecret
}

// preflighted is what the preflight found and opened: every dependency
// answered.
type preflighted struct {
	sim      *simclient.Client
	settings simclient.Settings
	stats    simclient.Stats // the simulator's counters before the load
	workload scenario.Workload
	target   *target.Client
	poller   *target.Client // the status pollers' connections; nil without pollers
	pool     *pgxpool.Pool
	lastUser int64
	tokens   []string
}

// close closes what the preflight opened, the pool first.
func (p *preflighted) close() {
	if p.pool != nil {
		p.pool.Close()
	}
	if p.target != nil {
		p.target.Close()
	}
	if p.poller != nil {
		p.poller.Close()
	}
}

// preflight checks that every dependency answers, each within
// preflightTimeout, so that an unreachable one stops the run at once
// instead of hanging: the simulator and its limit, the target, its
// database and its seeded users, and a feed read with a minted token.
func preflight(ctx context.Context, o *runOptions) (_ *preflighted, err error) {
	p := &preflighted{sim: simclient.New(o.simURL)}
	defer func() {
		if err != nil {
			p.close()
		}
	}()
	pctx, cancel := context.WithTimeout(ctx, preflightTimeout)
	defer cancel()
	if p.settings, err = p.sim.Settings(pctx); err != nil {
		return nil, fmt.Errorf("the processor simulator at %s is unreachable or not the simulator: %w", o.simURL, err)
	}
	if !(p.settings.RateLimit > 0) {
		return nil, fmt.Errorf("the simulator at %s reports no rate limit (%v)", o.simURL, p.settings.RateLimit)
	}
	if p.workload, err = scenario.Resolve(o.sc, o.ov, p.settings.RateLimit); err != nil {
		return nil, usagef("%s", strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	p.target = target.New(o.kind, o.url, o.maxConns, o.timeout)
	if err := p.target.Ready(pctx); err != nil {
		return nil, err
	}
	if p.workload.Pollers > 0 {
		p.poller = target.New(o.kind, o.url, p.workload.Pollers, o.timeout)
	}
	if p.pool, err = connect(pctx, o.databaseURL); err != nil {
		return nil, fmt.Errorf("the %s database (--database-url) is unreachable: %w", o.kind, err)
	}
	p.lastUser = o.firstUser + int64(p.workload.Users) - 1
	if err := checkSeeded(pctx, p.pool, o.kind, o.firstUser, p.lastUser); err != nil {
		return nil, err
	}
	if p.tokens, err = mintTokens([]byte(o.secret), o.firstUser, p.workload.Users, p.workload.Duration+o.timeout+time.Hour); err != nil {
		return nil, err
	}
	if r := p.target.Feed(pctx, p.tokens[0], o.firstUser); r.Class != target.OK {
		hint := ""
		if r.Code == 401 || r.Code == 403 {
			hint = " (set AUTH_JWT_SECRET to the target's secret)"
		}
		return nil, fmt.Errorf("the %s target refuses a feed read of user %d: %d %s%s", o.kind, o.firstUser, r.Code, r.Err, hint)
	}
	if p.stats, err = p.sim.Stats(pctx); err != nil {
		return nil, fmt.Errorf("simulator stats: %w", err)
	}
	return p, nil
}

// setChecker gives opts the target's invariant checker (and, for the
// pipeline, its backlog); the as-is checker's baseline is the highest
// payment id before the load.
func setChecker(ctx context.Context, opts *loadgen.Options, o *runOptions, p *preflighted) error {
	switch o.kind {
	case target.Pipeline:
		pc := check.NewPipeline(p.pool, opts.RunID+"-", o.firstUser, p.lastUser)
		opts.Backlog = pc
		opts.Check = pc.Check
	case target.Legacy:
		lc := check.NewLegacy(p.pool, o.firstUser, p.lastUser)
		bctx, cancel := context.WithTimeout(ctx, preflightTimeout)
		baseline, err := lc.MaxPaymentID(bctx)
		cancel()
		if err != nil {
			return err
		}
		opts.Check = func(ctx context.Context, writes []check.Write, execs []simclient.Execution) (check.Report, error) {
			return lc.Check(ctx, baseline, writes, execs)
		}
	}
	return nil
}

// cpuMeter reads the CPU of the system's processes before the load and
// after the drain.
type cpuMeter struct {
	urls          map[string]string
	before, after report.CPUReading
	errs          map[string]string
	errsAfter     map[string]string
}

// startCPUMeter reads the CPU of o's processes, the target's and the
// simulator's included, and sets opts.AfterDrain to read it again: after
// the drain, before the checker, whose queries would otherwise count as
// the system's work.
func startCPUMeter(ctx context.Context, o *runOptions, opts *loadgen.Options) *cpuMeter {
	m := &cpuMeter{urls: o.metricURLs}
	m.urls[string(o.kind)] = strings.TrimRight(o.url, "/") + "/metrics"
	if o.kind == target.Pipeline {
		m.urls["gateway"] = m.urls[string(o.kind)]
		delete(m.urls, string(o.kind))
	}
	m.urls["processor-sim"] = strings.TrimRight(o.simURL, "/") + "/metrics"
	m.before, m.errs = report.ReadCPU(ctx, m.urls)
	opts.AfterDrain = func() { m.after, m.errsAfter = report.ReadCPU(context.WithoutCancel(ctx), m.urls) }
	return m
}

// used is the CPU each process used from before the load to after the
// drain (or to now, when the run stopped before its drain ended).
func (m *cpuMeter) used(ctx context.Context) []report.ProcessCPU {
	if m.after == nil {
		m.after, m.errsAfter = report.ReadCPU(context.WithoutCancel(ctx), m.urls)
	}
	for k, v := range m.errsAfter {
		m.errs[k] = v
	}
	return report.CPUUsed(m.urls, m.before, m.after, m.errs)
}

// runLoad runs the load and the drain, with the progress line, the
// generator's own CPU profile and the CPU readings; the first second's
// connections are dialed last, right before the load.
func runLoad(ctx context.Context, o *runOptions, p *preflighted, opts *loadgen.Options, env Env) (*loadgen.Result, *cpuMeter, error) {
	w := p.workload
	title := fmt.Sprintf("%s→%s", w.Scenario, o.kind)
	fmt.Fprintf(env.Stderr, "loadtest: run %s: %s: %d users, %.1f req/s for %s (%d requests, %.0f%% reads), L=%.0f/s; target %s\n",
		opts.RunID, title, w.Users, w.Rate, durationString(w.Duration), w.Requests(), w.ReadRatio*100, w.Limit, o.url)
	var line *progress.Line
	if !o.quiet {
		line = progress.New(env.Progress, title)
		opts.Progress = line.Update
	}
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return nil, nil, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return nil, nil, err
		}
	}
	cpu := startCPUMeter(ctx, o, opts)

	wctx, cancel := context.WithTimeout(ctx, preflightTimeout)
	err := p.target.Warm(wctx, min(o.maxConns, w.Requests(), int(w.Rate)+1))
	cancel()
	if err != nil {
		return nil, nil, err
	}
	res, runErr := loadgen.Run(ctx, *opts)
	if o.cpuProfile != "" {
		pprof.StopCPUProfile()
	}
	if line != nil {
		line.Finish()
	}
	return res, cpu, runErr
}

// judge builds the report of res, writes it and prints the verdict; a
// failed run is errFailedRun.
func judge(ctx context.Context, args []string, o *runOptions, p *preflighted, res *loadgen.Result, cpu *cpuMeter, runErr error, env Env) error {
	command := "loadtest run " + strings.Join(args, " ")
	rep := report.Judge(res, o.kind, o.url, p.settings, o.simURL, command, report.ThisMachine())
	rep.CPU = cpu.used(ctx)
	if runErr != nil {
		rep.Passed = false
		rep.Failures = append(rep.Failures, "interrupted: "+runErr.Error())
	}
	dir := o.out
	if dir == "" {
		dir = defaultOutDir(p.workload.Scenario, string(o.kind), res.StartedAt)
	}
	if err := report.Write(rep, dir); err != nil {
		return fmt.Errorf("write the report to %s: %w", dir, err)
	}
	if env.OnReport != nil {
		env.OnReport(rep, dir)
	}
	printVerdict(env.Stdout, rep, dir)
	if !rep.Passed {
		return errFailedRun
	}
	return nil
}

func connect(ctx context.Context, u string) (*pgxpool.Pool, error) {
	return postgres.Connect(ctx, u, 4)
}

// checkSeeded fails unless every user of the run exists with money to pay.
func checkSeeded(ctx context.Context, pool *pgxpool.Pool, kind target.Kind, first, last int64) error {
	var n int64
	var q, seed string
	switch kind {
	case target.Pipeline:
		var merchants int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM merchants WHERE id = ANY($1)`, loadgen.Merchants).Scan(&merchants); err != nil {
			return fmt.Errorf("read the pipeline's merchants (is --database-url the pipeline's database?): %w", err)
		}
		if merchants != len(loadgen.Merchants) {
			return fmt.Errorf("the pipeline lacks the demo merchants %v: run financectl seed --demo", loadgen.Merchants)
		}
		q = `SELECT count(*) FROM wallets WHERE user_id BETWEEN $1 AND $2 AND balance - held > 0`
		seed = fmt.Sprintf("financectl seed --users %d --start-id %d", last-first+1, first)
	case target.Legacy:
		q = `SELECT count(DISTINCT user_id) FROM payments WHERE user_id BETWEEN $1 AND $2`
		seed = fmt.Sprintf("legacy seed --users %d --start-id %d", last-first+1, first)
	}
	if err := pool.QueryRow(ctx, q, first, last).Scan(&n); err != nil {
		return fmt.Errorf("count the seeded users (is --database-url the %s database?): %w", kind, err)
	}
	if want := last - first + 1; n < want {
		return fmt.Errorf("only %d of the %d users %d..%d are seeded with funds on the %s target: run `%s`",
			n, want, first, last, kind, seed)
	}
	return nil
}

func mintTokens(secret []byte, first int64, users int, ttl time.Duration) ([]string, error) {
	now := time.Now()
	toks := make([]string, users)
	for i := range toks {
		t, err := auth.Mint(secret, first+int64(i), false, ttl, now)
		if err != nil {
			return nil, fmt.Errorf("mint a token: %w", err)
		}
		toks[i] = t
	}
	return toks, nil
}

// newRunID returns a short unique id without LIKE wildcards: it prefixes
// the run's Idempotency-Keys.
func newRunID() string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return "lt" + strconv.FormatInt(time.Now().Unix(), 36) + hex.EncodeToString(b)
}

func defaultOutDir(scenarioName, kind string, at time.Time) string {
	base := "out"
	if st, err := os.Stat(filepath.Join("loadtest", "go.mod")); err == nil && !st.IsDir() {
		base = filepath.Join("loadtest", "out")
	}
	return filepath.Join(base, fmt.Sprintf("%s-%s-%s", scenarioName, kind, at.UTC().Format("20060102T150405Z")))
}

func printVerdict(w io.Writer, r *report.Report, dir string) {
	res := r.Result
	c := res.Check
	verdict := "PASSED"
	if !r.Passed {
		verdict = "FAILED (" + strings.Join(r.Failures, "; ") + ")"
	}
	fmt.Fprintf(w, "%s → %s: %s\n", r.Scenario, r.Target, verdict)
	fmt.Fprintf(w, "  payments: %d sent, %d 2xx, p50 %.1f ms, p99 %.1f ms, max %.1f ms\n",
		res.Writes.Sent, res.Writes.ByClass[string(target.OK)], res.Writes.Latency.P50, res.Writes.Latency.P99, res.Writes.Latency.Max)
	if res.Reads.Sent > 0 {
		fmt.Fprintf(w, "  feeds:    %d sent, %d 2xx, p50 %.1f ms, p99 %.1f ms, max %.1f ms\n",
			res.Reads.Sent, res.Reads.ByClass[string(target.OK)], res.Reads.Latency.P50, res.Reads.Latency.P99, res.Reads.Latency.Max)
	}
	fmt.Fprintf(w, "  checker:  lost %d, paid twice %d, stuck %d, balance mismatch %d", c.Lost, c.PaidTwice, c.Stuck, c.BalanceMismatch)
	if r.Target == string(target.Legacy) {
		fmt.Fprintf(w, "; executed but told failed %d, unresolved %d (%d of them executed)", c.ExecutedToldFailed, c.Unresolved, c.UnresolvedExecuted)
	}
	fmt.Fprintln(w)
	for _, g := range r.Goals {
		m := "met"
		if !g.Met {
			m = "NOT met"
		}
		fmt.Fprintf(w, "  goal %s: want %s, got %s: %s\n", g.Name, g.Want, g.Got, m)
	}
	fmt.Fprintf(w, "  report:   %s\n", filepath.Join(dir, "summary.md"))
}
