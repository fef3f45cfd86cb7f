package stack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/finsvc/finance/pkg/auth"
	"github.com/finsvc/finance/pkg/entry"
	"github.com/finsvc/finance/pkg/postgres"
)

// DemoUser is the seeded user whose token and curl line are printed.
const DemoUser = 3456

// Command runs one devstack subcommand other than chaos: run (the
// default), ensure-postgres or stop-postgres.
func Command(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cmd := "run"
	if len(args) > 0 {
		cmd = args[0]
	}
	cfg, err := LoadConfig(getenv)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	switch cmd {
	case "run":
		return run(ctx, cfg, stdout)
	case "ensure-postgres":
		srv, err := findOrStartPostgres(ctx, cfg.StateDir, cfg.PrivatePGPort, stderr)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, srv.adminURL)
		return nil
	case "stop-postgres":
		p, err := newPrivatePostgres(ctx, cfg.StateDir, cfg.PrivatePGPort, stderr)
		if err != nil {
			return err
		}
		return p.stop(ctx)
	default:
		return entry.Usagef("unknown command %q; want run, chaos, ensure-postgres or stop-postgres", cmd)
	}
}

func run(ctx context.Context, cfg Config, out io.Writer) error {
	st, err := Start(ctx, cfg, Options{Quiet: cfg.Quiet}, out)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := printBanner(out, cfg, st.SimURL); err != nil {
		return err
	}
	<-ctx.Done()
	st.services.logf("stopping: services first, then the broker, then PostgreSQL")
	return nil
}

// Options changes what Start runs; the zero value is `devstack run`.
type Options struct {
	// Quiet sends the children's output to their log files only.
	Quiet bool
	// KafkaBrokers is devkafka's broker count (DEVKAFKA_BROKERS); 0 means 1.
	KafkaBrokers int
	// KafkaControlAddr turns on devkafka's fault-control API (DEVKAFKA_CONTROL_ADDR).
	KafkaControlAddr string
	// SimEnv is added to the processor simulator's environment, after
	// everything else (fault rates; a SIM_DATA_FILE here wins over
	// Config.SimDataFile).
	SimEnv []string
	// Env is added to every service's environment.
	Env []string
	// Database names the database to use on the found or started server
	// when DATABASE_URL is not set; empty means "finance".
	Database string
	// DropDatabase drops Database first (for a run that must start empty;
	// the simulator's record goes with it).
	DropDatabase bool
}

// Stack is a running pipeline started by Start.
type Stack struct {
	// DatabaseURL is the services' database.
	DatabaseURL string
	// Brokers is the KAFKA_BROKERS value the services got.
	Brokers string
	// GatewayURL, SimURL are base URLs (http://host:port).
	GatewayURL, SimURL string
	// Services are the supervised services, in start order.
	Services []string

	cfg      Config
	env      []string // common env of services and tools
	services *supervisor
	close    []func() // run in reverse order by Close
}

// Pid returns the pid of a service's current process, 0 while it is down.
func (st *Stack) Pid(name string) int { return st.services.pid(name) }

// Starts returns how many times a service was started, restarts included.
func (st *Stack) Starts(name string) int { return st.services.startCount(name) }

// Logf prints one devstack line.
func (st *Stack) Logf(format string, args ...any) { st.services.logf(format, args...) }

// Financectl runs financectl with the services' environment, its output to out.
func (st *Stack) Financectl(ctx context.Context, out io.Writer, args ...string) error {
	return runTool(ctx, out, filepath.Join(st.cfg.BinDir, "financectl"), st.env, args...)
}

// Command returns a command running one of the built binaries (financectl)
// with the services' environment.
func (st *Stack) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(st.cfg.BinDir, name), args...)
	cmd.Env = append(os.Environ(), st.env...)
	return cmd
}

// Close stops the services, then the broker, then a private PostgreSQL.
func (st *Stack) Close() {
	for i := len(st.close) - 1; i >= 0; i-- {
		st.close[i]()
	}
	st.close = nil
}

// Start brings the whole pipeline up as `devstack run` does and returns once
// every service is healthy. Close stops it; on error everything started is
// already stopped.
func Start(ctx context.Context, cfg Config, opts Options, out io.Writer) (_ *Stack, err error) {
	st := &Stack{cfg: cfg}
	defer func() {
		if err != nil {
			st.Close()
		}
	}()
	unlock, err := lockStateDir(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	st.close = append(st.close, unlock) // the last to go
	// Services stop first, then the broker, then PostgreSQL: each layer is
	// supervised separately so the order holds.
	infra, err := newSupervisor(out, filepath.Join(cfg.StateDir, "logs"))
	if err != nil {
		return nil, err
	}
	services, err := newSupervisor(out, filepath.Join(cfg.StateDir, "logs"))
	if err != nil {
		return nil, err
	}
	infra.quiet, services.quiet = opts.Quiet, opts.Quiet
	st.services = services

	dbURL := cfg.DatabaseURL
	if dbURL == "" {
		srv, err := findOrStartPostgres(ctx, cfg.StateDir, cfg.PrivatePGPort, out)
		if err != nil {
			return nil, fmt.Errorf("postgres: %w", err)
		}
		if srv.private != nil {
			st.close = append(st.close, func() {
				if err := srv.private.stop(context.Background()); err != nil {
					infra.logf("stop private PostgreSQL: %v", err)
				} else {
					infra.logf("private PostgreSQL stopped")
				}
			})
		}
		name := opts.Database
		if name == "" {
			name = "finance"
		}
		if opts.DropDatabase {
			if err := dropDatabase(ctx, srv.adminURL, name); err != nil {
				return nil, err
			}
		}
		dbURL = withDatabase(srv.adminURL, name)
	}
	st.DatabaseURL = dbURL
	infra.logf("PostgreSQL: %s", postgres.RedactURL(dbURL))

	infraCtx, stopInfra := context.WithCancel(context.WithoutCancel(ctx))
	st.close = append(st.close, func() { stopInfra(); infra.wait() })
	svcCtx, stopServices := context.WithCancel(context.WithoutCancel(ctx))
	st.close = append(st.close, func() { stopServices(); services.wait() })

	if cfg.KafkaBrokers == "" {
		env := []string{
			"DEVKAFKA_ADDR=" + cfg.KafkaAddr,
			"DEVKAFKA_DATA_DIR=" + filepath.Join(cfg.StateDir, "kafka"),
			"DEVKAFKA_PARTITIONS=" + strconv.Itoa(cfg.Partitions),
			"LOG_LEVEL=" + cfg.LogLevel,
		}
		if opts.KafkaBrokers > 1 {
			env = append(env, "DEVKAFKA_BROKERS="+strconv.Itoa(opts.KafkaBrokers))
		}
		if opts.KafkaControlAddr != "" {
			env = append(env, "DEVKAFKA_CONTROL_ADDR="+opts.KafkaControlAddr)
		}
		env = append(env, cfg.schedulerEnv("devkafka")...)
		err := infra.start(infraCtx, proc{
			name: "devkafka", path: filepath.Join(cfg.BinDir, "devkafka"), stopGrace: 60 * time.Second, env: env,
			nice: cfg.niceness("devkafka"),
		})
		if err != nil {
			return nil, err
		}
		if err := waitTCP(ctx, cfg.KafkaAddr, 30*time.Second); err != nil {
			return nil, fmt.Errorf("devkafka: %w", err)
		}
		if opts.KafkaControlAddr != "" {
			if err := waitHTTP(ctx, httpURL(opts.KafkaControlAddr)+"/healthz", 30*time.Second); err != nil {
				return nil, fmt.Errorf("devkafka control API: %w", err)
			}
		}
	}
	st.Brokers = cfg.brokers()
	infra.logf("Kafka: %s", st.Brokers)

	// common is every child's environment but DATABASE_URL, which is the
	// URL's user's for financectl and a service's own role's for a service.
	common := []string{
		"KAFKA_BROKERS=" + cfg.brokers(),
		"KAFKA_PARTITIONS=" + strconv.Itoa(cfg.Partitions),
		"LOG_LEVEL=" + cfg.LogLevel,
		"FINANCE_DEV_MODE=true",
	}
	// financectl reconcile and verify read the processor's record.
	st.env = append(append([]string{}, common...), "DATABASE_URL="+dbURL, "PROCESSOR_URL="+httpURL(cfg.SimAddr))
	if err := st.Financectl(ctx, out, "createdb"); err != nil {
		return nil, err
	}
	// The simulator's record goes with the database: a database without
	// the schema yet (new, dropped, or on a new private server) has never
	// seen a payment, so earlier executions must not show against it.
	journal := simDataFile(cfg, opts)
	migrated, err := hasSchema(ctx, dbURL)
	if err != nil {
		return nil, err
	}
	if !migrated {
		removed, err := removeFile(journal)
		if err != nil {
			return nil, fmt.Errorf("remove the simulator's record: %w", err)
		}
		if removed {
			infra.logf("new database: removed the simulator's record of earlier executions (%s)", journal)
		}
	}
	for _, args := range [][]string{
		{"migrate", "up"},
		{"seed", "--demo"},
		{"topics", "create", "--partitions", strconv.Itoa(cfg.Partitions)},
	} {
		if err := st.Financectl(ctx, out, args...); err != nil {
			return nil, err
		}
	}

	// Each service connects as its own role (migration 00012 made them
	// with the grants its SQL needs), the periodic reconciler as
	// finance_reconciler (00015); the operator's financectl commands and
	// the vacuum job stay the URL's user, the schema's owner.
	roleURLs := map[string]string{}
	// The console's "resolve from processor" settles, which the gateway's
	// role may not: under service roles it writes as the reconciler does,
	// finance_reconciler, on a connection of its own name. Without them
	// the gateway is the URL's user already.
	var gatewayEnv []string
	if cfg.ServiceRoles {
		if roleURLs, err = serviceRoleURLs(dbURL); err != nil {
			return nil, err
		}
		roleURLs["financectl"] = withApplicationName(roleURLs["financectl"], ReconcilerApp)
		reconcileURL, err := gatewayReconcileURL(dbURL)
		if err != nil {
			return nil, err
		}
		gatewayEnv = append(gatewayEnv, "GATEWAY_RECONCILE_DATABASE_URL="+reconcileURL)
		if err := checkRoleLogins(ctx, roleURLs); err != nil {
			return nil, err
		}
		infra.logf("PostgreSQL: each service connects as its own role (%s), the reconciler (application_name %s) and "+
			"the gateway console's resolutions (%s) as %s; financectl's own commands and the vacuum job as the URL's user",
			strings.Join(slices.Sorted(maps.Values(serviceRoles)), ", "), ReconcilerApp, GatewayReconcileApp, ReconcilerRole)
	} else {
		infra.logf("PostgreSQL: DEVSTACK_SERVICE_ROLES=false: every service connects as the URL's user")
	}

	simURL := httpURL(cfg.SimAddr)
	st.SimURL, st.GatewayURL = simURL, httpURL(cfg.GatewayAddr)
	procs := []proc{
		{name: "processor-sim", env: append([]string{"HTTP_ADDR=" + cfg.SimAddr, "SIM_RATE_LIMIT=" + strconv.Itoa(cfg.ProcessorLimit),
			"SIM_DATA_FILE=" + journal}, opts.SimEnv...)},
		{name: "outbox-relay", env: []string{"OPS_ADDR=" + cfg.RelayOps}},
		{name: "dispatcher", env: []string{"OPS_ADDR=" + cfg.DispatcherOps, "PROCESSOR_URL=" + simURL,
			"PROCESSOR_RATE_LIMIT=" + strconv.Itoa(cfg.ProcessorLimit)}},
		{name: "status-consumer", env: []string{"OPS_ADDR=" + cfg.StatusOps}},
		// The console (/console) resolves unknown payments from the
		// simulator and measures utilization against the same L.
		{name: "gateway", env: append([]string{"HTTP_ADDR=" + cfg.GatewayAddr, "OPS_ADDR=" + cfg.GatewayOps,
			"WEBHOOK_ALLOW_PRIVATE=127.0.0.0/8,::1/128", "GATEWAY_PROCESSOR_URL=" + simURL,
			"GATEWAY_PROCESSOR_RATE_LIMIT=" + strconv.Itoa(cfg.ProcessorLimit)}, gatewayEnv...)},
		// The periodic reconciliation job: resolves unknown payments, reports
		// mismatches, and serves its metrics (the payments not final yet,
		// its passes, the consumer groups' lag and the dead-letter topics'
		// depth from KAFKA_BROKERS) as the cluster's reconciler does.
		{name: "financectl", args: []string{"reconcile", "--watch", "30s", "--processor-url", simURL,
			"--metrics-addr", cfg.ReconcilerMetrics}, env: []string{"FINANCE_ACTOR=job:reconciler"}},
	}
	// Webhooks (issue 15), when its binary was built (make build does; the
	// end-to-end tests that do not name it run without it). Receivers on
	// this machine are allowed: the delivery service refuses private and
	// loopback addresses otherwise.
	if _, err := os.Stat(filepath.Join(cfg.BinDir, "webhook-delivery")); err == nil {
		procs = append(procs, proc{name: "webhook-delivery", env: []string{"OPS_ADDR=" + cfg.WebhookOps,
			"WEBHOOK_ALLOW_PRIVATE=127.0.0.0/8,::1/128"}})
	}
	// Some shared development servers run with autovacuum off; there the
	// outbox and the wallets bloat with dead rows until every read of them
	// slows down. The vacuum job does autovacuum's work for our tables.
	autovacuum, err := autovacuumOn(ctx, dbURL)
	if err != nil {
		return nil, err
	}
	if !autovacuum {
		infra.logf("PostgreSQL runs with autovacuum=off: starting `financectl vacuum --watch 1m` in its place")
		procs = append(procs, proc{name: "financectl-vacuum", path: filepath.Join(cfg.BinDir, "financectl"),
			args: []string{"vacuum", "--watch", "1m"}})
	}
	for _, p := range procs {
		if p.path == "" {
			p.path = filepath.Join(cfg.BinDir, p.name)
		}
		db := dbURL
		if u, ok := roleURLs[p.name]; ok {
			db = u
		}
		env := append(append(append([]string{}, common...), "DATABASE_URL="+db), cfg.schedulerEnv(p.name)...)
		p.env = append(append(env, opts.Env...), p.env...)
		p.nice = cfg.niceness(p.name)
		p.stopGrace = 20 * time.Second
		if err := services.start(svcCtx, p); err != nil {
			return nil, err
		}
		st.Services = append(st.Services, p.name)
	}
	for name, u := range st.HealthURLs() {
		if err := waitHTTP(ctx, u, 60*time.Second); err != nil {
			return nil, fmt.Errorf("%s did not become ready: %w", name, err)
		}
	}
	return st, nil
}

// HealthURLs maps each service to the URL that answers 200 once it is up.
func (st *Stack) HealthURLs() map[string]string {
	cfg := st.cfg
	urls := map[string]string{
		"processor-sim":   st.SimURL + "/healthz",
		"outbox-relay":    httpURL(cfg.RelayOps) + "/healthz",
		"dispatcher":      httpURL(cfg.DispatcherOps) + "/healthz",
		"status-consumer": httpURL(cfg.StatusOps) + "/healthz",
		"gateway":         st.GatewayURL + "/readyz",
		"gateway ops":     httpURL(cfg.GatewayOps) + "/readyz",
		"financectl":      httpURL(cfg.ReconcilerMetrics) + "/healthz",
	}
	if slices.Contains(st.Services, "webhook-delivery") {
		urls["webhook-delivery"] = httpURL(cfg.WebhookOps) + "/healthz"
	}
	return urls
}

func printBanner(out io.Writer, cfg Config, simURL string) error {
	token, err := auth.Mint([]byte(auth.DevSecret), DemoUser, false, 24*time.Hour, time.Now())
	if err != nil {
		return err
	}
	admin, err := auth.Mint([]byte(auth.DevSecret), 1, true, 24*time.Hour, time.Now())
	if err != nil {
		return err
	}
	gw := httpURL(cfg.GatewayAddr)
	fmt.Fprintf(out, `
================================================================================
Finance Service is running (dev mode: tokens are signed with the documented dev secret).

  gateway          %s        (feeds, payments, /metrics, /healthz, /readyz)
  console          %s/console  (operators: sign in with the admin token below)
  processor-sim    %s        (/sim/executions, /sim/stats, /sim/config)
  gateway ops      %s/metrics  (and /loglevel, /debug/pprof/, as every ops port)
  dispatcher ops   %s/metrics
  relay ops        %s/metrics
  status ops       %s/metrics
  webhooks ops     %s/metrics  (when bin/webhook-delivery is built)
  reconciler       %s/metrics  (financectl reconcile --watch 30s)
  Kafka            %s
  logs             %s

A token for user %d, valid 24 h:

  TOKEN=%s

An admin token for the console (user 1, valid 24 h):

  %s

Pay Apple 5.00 and watch it settle:

  curl -s -i -X POST %s/v1/payments -H "Authorization: Bearer %s" -H 'Content-Type: application/json' -H "Idempotency-Key: demo-$(date +%%s%%N)" -d '{"user_id":%d,"merchant_id":4593,"amount":-500}'
  curl -s %s/v1/users/%d/feed -H "Authorization: Bearer %s"

Ctrl-C stops everything.
================================================================================
`, gw, gw, simURL, httpURL(cfg.GatewayOps), httpURL(cfg.DispatcherOps), httpURL(cfg.RelayOps), httpURL(cfg.StatusOps),
		httpURL(cfg.WebhookOps), httpURL(cfg.ReconcilerMetrics), cfg.brokers(),
		filepath.Join(cfg.StateDir, "logs"), DemoUser, token, admin, gw, token, DemoUser, gw, DemoUser, token)
	return nil
}

// runTool runs a one-shot command (financectl) to completion.
func runTool(ctx context.Context, out io.Writer, path string, env []string, args ...string) error {
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %v: %w", filepath.Base(path), args, err)
	}
	return nil
}

func waitTCP(ctx context.Context, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			return conn.Close()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not accepting connections after %v: %w", addr, timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func waitHTTP(ctx context.Context, u string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: 2 * time.Second}
	var last error
	for time.Now().Before(deadline) {
		resp, err := client.Get(u)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%s answered %d", u, resp.StatusCode)
		}
		last = err
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return errors.Join(fmt.Errorf("%s not ready after %v", u, timeout), last)
}

// autovacuumOn reports whether the PostgreSQL server at dbURL runs autovacuum.
func autovacuumOn(ctx context.Context, dbURL string) (bool, error) {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return false, fmt.Errorf("read autovacuum setting: %w", err)
	}
	defer conn.Close(ctx)
	var setting string
	if err := conn.QueryRow(ctx, "SHOW autovacuum").Scan(&setting); err != nil {
		return false, fmt.Errorf("read autovacuum setting: %w", err)
	}
	return setting == "on", nil
}

// simDataFile is the simulator's journal: the last SIM_DATA_FILE in
// opts.SimEnv, else cfg.SimDataFile.
func simDataFile(cfg Config, opts Options) string {
	path := cfg.SimDataFile
	for _, kv := range opts.SimEnv {
		if v, ok := strings.CutPrefix(kv, "SIM_DATA_FILE="); ok {
			path = v
		}
	}
	return path
}

// hasSchema reports whether the database at dbURL was migrated before (has
// the payments table).
func hasSchema(ctx context.Context, dbURL string) (bool, error) {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return false, fmt.Errorf("look for the schema: %w", err)
	}
	defer conn.Close(ctx)
	var found bool
	if err := conn.QueryRow(ctx, "SELECT to_regclass('payments') IS NOT NULL").Scan(&found); err != nil {
		return false, fmt.Errorf("look for the schema: %w", err)
	}
	return found, nil
}

// removeFile removes path and reports whether it was there.
func removeFile(path string) (bool, error) {
	err := os.Remove(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, nil
}

// dropDatabase drops database name on the server of adminURL, if it exists.
func dropDatabase(ctx context.Context, adminURL, name string) error {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	return nil
}

func withDatabase(serverURL, name string) string {
	u, err := url.Parse(serverURL)
	if err != nil {
		return serverURL
	}
	u.Path = "/" + name
	return u.String()
}
