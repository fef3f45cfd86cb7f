package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/finsvc/finance/loadtest/internal/loadgen"
	"github.com/finsvc/finance/loadtest/internal/reads"
	"github.com/finsvc/finance/loadtest/internal/report"
	"github.com/finsvc/finance/loadtest/internal/target"
)

type hostileOptions struct {
	cfg         reads.HostileConfig
	databaseURL string
	out         string
	quiet       bool
	metrics     string
	localCPU    string
	// process runs the hostile client in a process of its own.
	process bool
}

func hostileFlags() (*flag.FlagSet, *hostileOptions) {
	o := &hostileOptions{cfg: reads.HostileDefaults()}
	c := &o.cfg
	fs := flag.NewFlagSet("loadtest run (hostile)", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.String("scenario", reads.Hostile, "hostile")
	fs.String("target", "pipeline", "pipeline only (the gateway's per-client limits)")
	fs.StringVar(&c.URL, "url", defaultPipelineURL, "the gateway's base `URL`")
	fs.StringVar(&o.databaseURL, "database-url", "", "the pipeline's PostgreSQL, to check the users are seeded (default $DATABASE_URL)")
	fs.Int64Var(&c.FirstUser, "first-user", DefaultFirstUser, "first victim's user `id`; the hostile's accounts follow the victims")
	fs.IntVar(&c.Users, "users", c.Users, "victims, each with its own token")
	fs.Float64Var(&c.Rate, "rate", c.Rate, "victims' requests per second, all of them together (open model)")
	fs.Float64Var(&c.PaymentRatio, "payment-ratio", c.PaymentRatio, "share of the victims' requests that are small payments")
	fs.Float64Var(&c.BalanceRatio, "balance-ratio", c.BalanceRatio, "share of the victims' reads that are balances (the rest feeds)")
	fs.Float64Var(&c.HostileRate, "hostile-rate", c.HostileRate, "hostile requests per second in its phases (open model)")
	fs.IntVar(&c.Accounts, "hostile-accounts", c.Accounts, "the hostile's own seeded users, after the victims")
	fs.StringVar(&c.Source, "hostile-source", c.Source, "the hostile's source `address` (127.0.0.0/8 is all loopback on Linux; "+
		"empty: the kernel's choice, the victims' address)")
	fs.Func("hostile-kinds", "the hostile's requests, `kind,...`, sent in turn (default all: "+
		strings.Join(reads.HostileKinds, ",")+")", func(v string) error {
		c.Kinds = strings.Split(v, ",")
		return nil
	})
	fs.IntVar(&c.HostileConns, "hostile-conns", c.HostileConns, "the hostile's connections at most (a request due while all are busy is skipped)")
	fs.IntVar(&c.Phases, "phases", c.Phases, "phases, quiet and hostile in turn, starting quiet (even)")
	fs.DurationVar(&c.Phase, "phase", c.Phase, "each phase's length")
	fs.DurationVar(&c.Warmup, "warmup", c.Warmup, "victims only before the first phase, not measured")
	fs.IntVar(&c.MaxConns, "max-conns", c.MaxConns, "the victims' connections at most")
	fs.DurationVar(&c.Timeout, "timeout", c.Timeout, "per-request timeout")
	fs.StringVar(&o.metrics, "metrics", "", "extra `name=url,...` of /metrics whose process CPU to report")
	fs.StringVar(&o.localCPU, "local-cpu", "", "`names,...` of local processes whose CPU to report (e.g. postgres)")
	fs.StringVar(&o.out, "out", "", "output `directory` (default loadtest/out/hostile-pipeline-<time>)")
	fs.BoolVar(&o.quiet, "quiet", false, "no progress line")
	fs.BoolVar(&o.process, "hostile-process", true, "run the hostile client in a process of its own (this binary's "+
		"hostile-client command), as a real one would not share the victims' Go scheduler; false: in this process")
	return fs, o
}

func parseHostile(args []string, env Env) (*hostileOptions, error) {
	fs, o := hostileFlags()
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
	if t := fs.Lookup("target").Value.String(); t != string(target.Pipeline) {
		problems = append(problems, fmt.Sprintf("--target %s: the hostile scenario tests the gateway's limits: pipeline only", t))
	}
	if pu, err := url.Parse(o.cfg.URL); err != nil || pu.Host == "" {
		problems = append(problems, fmt.Sprintf("--url %q: want http://host:port", o.cfg.URL))
	}
	o.cfg.Merchants = loadgen.Merchants
	if err := o.cfg.Validate(); err != nil {
		problems = append(problems, strings.Split(err.Error(), "\n")...)
	}
	if len(problems) > 0 {
		return nil, usagef("%s", strings.Join(problems, "; "))
	}
	if o.databaseURL == "" {
		o.databaseURL = envOr(env.Getenv, "DATABASE_URL", defaultPipelineDB)
	}
	o.cfg.Secret = []byte(jwtSecret(env))
	return o, nil
}

// hostileCommand runs the hostile scenario: preflight (the gateway, the
// seeded users, the hostile's source address), the phases with the
// gateway's CPU read at every boundary, the goals, the report.
func hostileCommand(ctx context.Context, args []string, env Env) error {
	o, err := parseHostile(args, env)
	if o == nil || err != nil {
		return err
	}
	cfg := &o.cfg
	pctx, cancel := context.WithTimeout(ctx, preflightTimeout)
	defer cancel()
	tc := target.New(target.Pipeline, cfg.URL, 4, cfg.Timeout)
	defer tc.Close()
	if err := tc.Ready(pctx); err != nil {
		return err
	}
	pool, err := connect(pctx, o.databaseURL)
	if err != nil {
		return fmt.Errorf("the pipeline database (--database-url) is unreachable: %w", err)
	}
	defer pool.Close()
	last := cfg.FirstUser + int64(cfg.Users+cfg.Accounts) - 1
	if err := checkSeeded(pctx, pool, target.Pipeline, cfg.FirstUser, last); err != nil {
		return err
	}
	pool.Close()
	if err := dialFrom(pctx, cfg.Source, cfg.URL); err != nil {
		return err
	}
	cancel()

	ro := &runOptions{metricURLs: map[string]string{}}
	if err := addMetrics(ro, o.metrics, o.localCPU); err != nil {
		return err
	}
	cpuURLs := ro.metricURLs
	gatewayMetrics := strings.TrimRight(cfg.URL, "/") + "/metrics"
	cpuURLs["gateway"] = gatewayMetrics
	cfg.CPU = func(ctx context.Context) (float64, error) {
		r, errs := report.ReadCPU(ctx, map[string]string{"gateway": gatewayMetrics})
		if e, ok := errs["gateway"]; ok {
			return 0, errors.New(e)
		}
		return r["gateway"], nil
	}
	cfg.RunID = newRunID()
	if o.process {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("--hostile-process: %w", err)
		}
		cfg.Hostile = func(ctx context.Context, measured time.Time) (*reads.HostileSide, error) {
			return runHostileProcess(ctx, exe, *cfg, measured, env.Stderr)
		}
	}
	if !o.quiet {
		cfg.Progress = func(el time.Duration, p int, hostile bool, n int64, p99 float64) {
			phase := "warm-up"
			if p >= 0 {
				phase = fmt.Sprintf("phase %d %s", p+1, map[bool]string{true: "hostile", false: "quiet  "}[hostile])
			}
			fmt.Fprintf(env.Progress, "\rhostile→pipeline %5.0fs %s %9d victim requests, last second's p99 %7.1f ms ",
				el.Seconds(), phase, n, p99)
		}
	}
	fmt.Fprintf(env.Stderr, "loadtest: hostile→pipeline: %d victims from %d at %.0f/s; hostile %.0f/s from %s; %d phases of %s; target %s\n",
		cfg.Users, cfg.FirstUser, cfg.Rate, cfg.HostileRate, cfg.Source, cfg.Phases, cfg.Phase, cfg.URL)

	cpuBefore, cpuErrs := report.ReadCPU(ctx, cpuURLs)
	res, runErr := reads.RunHostile(ctx, *cfg)
	if cfg.Progress != nil {
		fmt.Fprintln(env.Progress)
	}
	if res == nil {
		return runErr
	}
	cpuAfter, errsAfter := report.ReadCPU(context.WithoutCancel(ctx), cpuURLs)
	for k, v := range errsAfter {
		cpuErrs[k] = v
	}
	rep := &reads.HostileReport{Scenario: reads.Hostile, Target: string(target.Pipeline), URL: cfg.URL,
		Command: "loadtest run " + strings.Join(args, " "), Settings: reads.HostileSettingsOf(*cfg), Result: res,
		CPU: report.CPUUsed(cpuURLs, cpuBefore, cpuAfter, cpuErrs), Machine: report.ThisMachine()}
	rep.Judge()
	dir := o.out
	if dir == "" {
		dir = defaultOutDir(reads.Hostile, string(target.Pipeline), res.StartedAt)
	}
	if err := rep.Write(dir); err != nil {
		return fmt.Errorf("write the report to %s: %w", dir, err)
	}
	if env.OnHostile != nil {
		env.OnHostile(rep, dir)
	}
	fmt.Fprintf(env.Stdout, "hostile → pipeline: victims p99 quiet %.1f ms, hostile %.1f ms (%.2f×); victim errors %v; hostile sent %.0f/s\n",
		res.Quiet.P99, res.Hostile.P99, rep.P99Ratio, res.VictimErrors, res.HostileRate)
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

// dialFrom checks that a connection from source reaches the target: a
// source address this machine does not have fails here, not in every
// hostile request.
func dialFrom(ctx context.Context, source, targetURL string) error {
	if source == "" {
		return nil
	}
	u, err := url.Parse(targetURL)
	if err != nil {
		return err
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "80")
	}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(source)}}
	conn, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return fmt.Errorf("--hostile-source %s cannot reach %s: %w", source, host, err)
	}
	return conn.Close()
}

// hostileClientArgs are the hostile-client command's arguments for cfg.
func hostileClientArgs(cfg reads.HostileConfig, measured time.Time) []string {
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
	return []string{"hostile-client", "--url", cfg.URL, "--first-user", strconv.FormatInt(cfg.FirstUser, 10),
		"--users", strconv.Itoa(cfg.Users), "--hostile-rate", f(cfg.HostileRate),
		"--hostile-accounts", strconv.Itoa(cfg.Accounts), "--hostile-source", cfg.Source,
		"--hostile-conns", strconv.Itoa(cfg.HostileConns), "--hostile-kinds", strings.Join(cfg.Kinds, ","), "--phases", strconv.Itoa(cfg.Phases),
		"--phase", cfg.Phase.String(), "--timeout", cfg.Timeout.String(), "--run-id", cfg.RunID,
		"--measured", strconv.FormatInt(measured.UnixNano(), 10)}
}

// runHostileProcess runs cfg's hostile client as exe's hostile-client
// command and reads what it did from its output.
func runHostileProcess(ctx context.Context, exe string, cfg reads.HostileConfig, measured time.Time, stderr io.Writer) (*reads.HostileSide, error) {
	cmd := exec.CommandContext(ctx, exe, hostileClientArgs(cfg, measured)...)
	cmd.Env = append(os.Environ(), "AUTH_JWT_SECRET="+string(cfg.Secret))
	cmd.Stderr = stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s hostile-client: %w", exe, err)
	}
	var side reads.HostileSide
	if err := json.Unmarshal(out, &side); err != nil {
		return nil, fmt.Errorf("%s hostile-client's output: %w", exe, err)
	}
	return &side, nil
}

// hostileClientCommand is the hostile client of a hostile run, in a
// process of its own: `loadtest run --scenario hostile` starts it with its
// settings and the measurement's start (--measured, Unix nanoseconds), and
// reads what it did (reads.HostileSide, JSON) from its standard output.
func hostileClientCommand(ctx context.Context, args []string, env Env) error {
	fs, o := hostileFlags()
	measured := fs.Int64("measured", 0, "the measurement's start, Unix `nanoseconds`")
	fs.StringVar(&o.cfg.RunID, "run-id", "", "the run's id, for the payments' Idempotency-Keys")
	if err := fs.Parse(args); err != nil {
		return usagef("hostile-client: %v", err)
	}
	if *measured == 0 || o.cfg.RunID == "" {
		return usagef("hostile-client: --measured and --run-id are required (loadtest run --scenario hostile starts it)")
	}
	o.cfg.Merchants = loadgen.Merchants
	o.cfg.Secret = []byte(jwtSecret(env))
	side, err := reads.RunHostileSide(ctx, o.cfg, time.Unix(0, *measured))
	if side == nil {
		return err
	}
	if jerr := json.NewEncoder(env.Stdout).Encode(side); jerr != nil {
		return jerr
	}
	return err
}
