// Package stack starts and supervises the all-in-one development pipeline.
package stack

import (
	"fmt"
	"net"
	"path/filepath"
	"strconv"

	"github.com/finsvc/finance/pkg/envconfig"
)

// Config is the stack's settings, all from the environment.
type Config struct {
	StateDir   string // broker data, private PostgreSQL, logs
	BinDir     string // the built binaries
	LogLevel   string
	Partitions int
	// Quiet sends the services' output straight to their log files, not
	// through devstack to the terminal as well (cheaper under load).
	Quiet bool

	GatewayAddr   string
	SimAddr       string
	KafkaAddr     string // where devkafka listens, unless KafkaBrokers is set
	GatewayOps    string // the gateway's ops port: /loglevel, /metrics, pprof
	DispatcherOps string
	RelayOps      string
	StatusOps     string
	WebhookOps    string
	// ReconcilerMetrics is where `financectl reconcile --watch` serves its
	// metrics (--metrics-addr).
	ReconcilerMetrics string
	PrivatePGPort     int
	DatabaseURL       string // empty: find or start a server
	KafkaBrokers      string // empty: start devkafka
	ProcessorLimit    int
	// ServiceRoles connects each service to PostgreSQL as its own role
	// (migration 00012: finance_gateway, ...), not as the URL's user:
	// DEVSTACK_SERVICE_ROLES, true unless set to false.
	ServiceRoles bool
	// SimDataFile is the simulator's record of executions, kept across
	// restarts as a real processor keeps it: SIM_DATA_FILE, by default
	// processor-sim.jsonl in StateDir.
	SimDataFile string
	// WorkerProcs is the GOMAXPROCS each light process gets (the relay,
	// the dispatcher, the status consumer, the webhook service, the
	// reconciler, the vacuum job, the broker and the simulator):
	// DEVSTACK_WORKER_PROCS, 1 by default; 0 leaves each to Go's default
	// (every CPU of the machine). The gateway always keeps every CPU.
	WorkerProcs int
	// WorkerNice is the niceness the same processes start at:
	// DEVSTACK_WORKER_NICE, 10 by default, 0 to 19. On one machine a
	// burst's acceptance (the gateway and PostgreSQL) then comes before
	// the settlement of the backlog, which the processor's limit paces
	// anyway: in bursts of 10,000 payments at 2,000/s the acceptance p99
	// fell from 0.9–6.0 s to 0.25–0.96 s (docs/loadtest.md, "Session 17").
	// The answers wait too: with clients polling through a burst, the time
	// from the processor's answer to a visible status rose from 0.74 to
	// 1.4 s at p99 (docs/loadtest.md, "Session 18").
	WorkerNice int
}

// LoadConfig reads the stack's settings from getenv and reports every problem at once.
func LoadConfig(getenv func(string) string) (Config, error) {
	r := envconfig.New(getenv)
	c := Config{
		StateDir:          r.String("STATE_DIR", ".run"),
		BinDir:            r.String("BIN_DIR", "bin"),
		LogLevel:          r.LogLevel("info"),
		Quiet:             r.Bool("DEVSTACK_QUIET", false),
		Partitions:        r.Int("KAFKA_PARTITIONS", 12),
		GatewayAddr:       r.String("GATEWAY_ADDR", "127.0.0.1:8080"),
		SimAddr:           r.String("SIM_ADDR", "127.0.0.1:8090"),
		KafkaAddr:         r.String("KAFKA_ADDR", "127.0.0.1:9092"),
		GatewayOps:        r.String("GATEWAY_OPS_ADDR", "127.0.0.1:9105"),
		DispatcherOps:     r.String("DISPATCHER_OPS_ADDR", "127.0.0.1:9101"),
		RelayOps:          r.String("RELAY_OPS_ADDR", "127.0.0.1:9102"),
		StatusOps:         r.String("STATUS_OPS_ADDR", "127.0.0.1:9103"),
		WebhookOps:        r.String("WEBHOOK_OPS_ADDR", "127.0.0.1:9104"),
		ReconcilerMetrics: r.String("RECONCILER_METRICS_ADDR", "127.0.0.1:9106"),
		PrivatePGPort:     r.Int("PRIVATE_PG_PORT", 5433),
		DatabaseURL:       r.String("DATABASE_URL", ""),
		KafkaBrokers:      r.String("KAFKA_BROKERS", ""),
		ProcessorLimit:    r.Int("PROCESSOR_RATE_LIMIT", 300),
		ServiceRoles:      r.Bool("DEVSTACK_SERVICE_ROLES", true),
		SimDataFile:       r.String("SIM_DATA_FILE", ""),
		WorkerProcs:       r.Int("DEVSTACK_WORKER_PROCS", 1),
		WorkerNice:        r.IntIn("DEVSTACK_WORKER_NICE", 10, 0, 19),
	}
	for name, addr := range map[string]string{
		"GATEWAY_ADDR": c.GatewayAddr, "SIM_ADDR": c.SimAddr, "KAFKA_ADDR": c.KafkaAddr,
		"DISPATCHER_OPS_ADDR": c.DispatcherOps, "RELAY_OPS_ADDR": c.RelayOps, "STATUS_OPS_ADDR": c.StatusOps,
		"WEBHOOK_OPS_ADDR": c.WebhookOps, "GATEWAY_OPS_ADDR": c.GatewayOps, "RECONCILER_METRICS_ADDR": c.ReconcilerMetrics,
	} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			r.Fail("%s=%q: want host:port", name, addr)
		}
	}
	if c.Partitions < 1 {
		r.Fail("KAFKA_PARTITIONS=%d: want at least 1", c.Partitions)
	}
	if c.WorkerProcs < 0 {
		r.Fail("DEVSTACK_WORKER_PROCS=%d: want 0 (Go's default) or more", c.WorkerProcs)
	}
	if c.ProcessorLimit < 1 {
		r.Fail("PROCESSOR_RATE_LIMIT=%d: want at least 1", c.ProcessorLimit)
	}
	if err := r.Err(); err != nil {
		return Config{}, err
	}
	abs, err := filepath.Abs(c.StateDir)
	if err != nil {
		return Config{}, fmt.Errorf("STATE_DIR: %w", err)
	}
	c.StateDir = abs
	if c.BinDir, err = filepath.Abs(c.BinDir); err != nil {
		return Config{}, fmt.Errorf("BIN_DIR: %w", err)
	}
	if c.SimDataFile == "" {
		c.SimDataFile = filepath.Join(c.StateDir, "processor-sim.jsonl")
	}
	if c.SimDataFile, err = filepath.Abs(c.SimDataFile); err != nil {
		return Config{}, fmt.Errorf("SIM_DATA_FILE: %w", err)
	}
	return c, nil
}

// brokers is the KAFKA_BROKERS value the services get.
func (c Config) brokers() string {
	if c.KafkaBrokers != "" {
		return c.KafkaBrokers
	}
	return c.KafkaAddr
}

// schedulerEnv is the environment that sizes the Go scheduler of the
// process name (WorkerProcs): GOMAXPROCS for every light process, nothing
// for the gateway, which serves the reads and the bursts with every CPU. On a
// machine where every process of the pipeline shares a few CPUs, each
// scheduler thread that spins looking for work before it sleeps takes CPU
// from the others: with one P per light process the mixed load test's CPU
// per payment fell by about 10% (docs/loadtest.md, "Session 17"). A pod in
// a cluster with a CPU limit gets the same from it (Go reads the limit at
// start); without one, GOMAXPROCS in its extraEnv does it.
func (c Config) schedulerEnv(name string) []string {
	if !light(name) || c.WorkerProcs == 0 {
		return nil
	}
	return []string{"GOMAXPROCS=" + strconv.Itoa(c.WorkerProcs)}
}

// niceness is the niceness the process name starts at (WorkerNice for a
// light process).
func (c Config) niceness(name string) int {
	if !light(name) {
		return 0
	}
	return c.WorkerNice
}

// light reports whether the process name is one of the pipeline's light
// processes, every one but the gateway, which serves the reads and takes
// the bursts.
func light(name string) bool { return name != "gateway" }

// httpURL turns a listen address into a URL a client on this machine can use.
func httpURL(addr string) string {
	host, port, _ := net.SplitHostPort(addr)
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port)
}
