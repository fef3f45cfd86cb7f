// Package chaos is `devstack chaos`: it starts the whole pipeline, seeds
// users, sends payments over HTTP as clients would (retrying with the same
// Idempotency-Key), and meanwhile SIGKILLs the services by an explicit kill
// plan (working processes, consumers inside their group's rebalance,
// processes right after a restart), injects broker faults through devkafka's
// control API and puts the processor simulator into an outage. It then stops
// the traffic, checks that every payment became final within the liveness
// window after the last kill, runs `financectl reconcile` and the invariant
// checker (pkg/verify), and reports what was lost, paid twice, out of
// balance or stuck.
package chaos

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Schedule is how the kills are spread.
type Schedule string

const (
	// PerService gives every killed service its own plan: KillsPerService
	// kills of the working process, some followed by a quick kill inside
	// the rebalance (consumers) or by a kill right after the restart.
	PerService Schedule = "per-service"
	// Sequence kills SequenceKills times in all, GapMin to GapMax apart, a
	// drawn service each time, whatever state it is in (issue 10's run).
	Sequence Schedule = "sequence"
)

// Config is one chaos run.
type Config struct {
	// Scenario names the defaults the run started from (Scenarios).
	Scenario string

	Users    int   // users seeded for the run
	StartID  int64 // first user id
	Balance  int64 // starting balance of each user, minor units
	Payments int   // payments sent
	Rate     float64
	Clients  int // concurrent clients

	// Kill lists the services to SIGKILL, by name (Targets); Schedule says
	// how (see kills.go).
	Kill     []string
	Schedule Schedule
	// PerService: kills of the working process, per service, at least;
	// QuickKills of them (per consumer) are followed by QuickBurst quick
	// kills in a row, each 0.2–1.5 s after the supervisor restarted it,
	// while it joins its group; RestartKills of them (per service) by a
	// kill within 0.2 s of the restart, while it starts up.
	KillsPerService int
	QuickKills      int
	QuickBurst      int
	RestartKills    int
	// Sequence: kills in all, and the time between two.
	SequenceKills  int
	GapMin, GapMax time.Duration
	KillSeed       int64 // 0: random

	SimErrorRate float64 // processor-sim SIM_ERROR_RATE
	SimLostRate  float64 // processor-sim SIM_LOST_RESPONSE_RATE
	SimDecline   float64 // processor-sim SIM_DECLINE_RATE
	SimSeed      int64   // 0: random
	Outage       time.Duration
	OutageAt     float64 // share of the payments sent before the outage starts

	Brokers      int  // devkafka brokers
	BrokerFaults bool // inject faults through devkafka's control API
	FaultEvery   time.Duration

	// Liveness is how long after the last kill (or the end of the
	// traffic, if later) every payment must be final.
	Liveness time.Duration
	// DrainTimeout bounds the wait for the backlog after the traffic;
	// payments still in flight then are stuck.
	DrainTimeout time.Duration
	JSONPath     string // also write the report as JSON here
	Quiet        bool   // no progress lines

	// WrapAPITransport, when set, wraps the transport of the run's
	// requests to the gateway's public API (the clients' payments, the
	// webhook receiver's registration): the crash test checks them against
	// docs/openapi.yaml (pkg/apicontract) through it.
	WrapAPITransport func(http.RoundTripper) http.RoundTripper `json:"-"`
}

// apiClient returns a client for the gateway's public API with timeout,
// its transport rt wrapped by WrapAPITransport when set.
func (c Config) apiClient(timeout time.Duration, rt http.RoundTripper) *http.Client {
	if c.WrapAPITransport != nil {
		rt = c.WrapAPITransport(rt)
	}
	return &http.Client{Timeout: timeout, Transport: rt}
}

// Scenarios are the names --scenario takes.
var Scenarios = []string{"default", "rebalance-kills"}

// ScenarioConfig returns the defaults of a named scenario.
func ScenarioConfig(name string) (Config, error) {
	switch name {
	case "", "default":
		return DefaultConfig(), nil
	case "rebalance-kills":
		return RebalanceKillsConfig(), nil
	}
	return Config{}, fmt.Errorf("scenario %q: want one of %s", name, strings.Join(Scenarios, ", "))
}

// DefaultConfig is `make chaos`: the figures of the issue, every service
// killed while working, consumers also inside their rebalances and every
// service right after a restart, broker faults and a processor outage.
func DefaultConfig() Config {
	return Config{
		Scenario: "default",
		Users:    1000, StartID: 2_000_000, Balance: 6_000, Payments: 5000, Rate: 10, Clients: 48,
		Kill: TargetNames(Targets), Schedule: PerService, KillsPerService: 10, QuickKills: 3, QuickBurst: 2, RestartKills: 2,
		SequenceKills: 14, GapMin: 2 * time.Second, GapMax: 5 * time.Second,
		SimErrorRate: 0.05, SimLostRate: 0.02, Outage: 20 * time.Second, OutageAt: 0.4,
		Brokers: 3, BrokerFaults: true, FaultEvery: 4 * time.Second,
		Liveness: 2 * time.Minute, DrainTimeout: 5 * time.Minute,
	}
}

// RebalanceKillsConfig is issue 10's run: 5,000 payments from 16 clients
// over 300 users while the gateway, the relay, the dispatcher and the
// status consumer are SIGKILLed 14 times, 2 to 5 s apart, and nothing else
// is faulted (one broker as `make run` starts it, no broker faults, a
// processor without errors, lost replies, declines or outage). The rate
// spreads the traffic over the kills (≈ 50 s); the balance lets nearly
// every payment be accepted.
func RebalanceKillsConfig() Config {
	c := DefaultConfig()
	c.Scenario = "rebalance-kills"
	c.Users, c.Balance, c.Payments, c.Rate, c.Clients = 300, 50_000, 5000, 100, 16
	c.Kill = []string{"gateway", "outbox-relay", "dispatcher", "status-consumer"}
	c.Schedule, c.SequenceKills, c.GapMin, c.GapMax = Sequence, 14, 2*time.Second, 5*time.Second
	c.SimErrorRate, c.SimLostRate, c.SimDecline, c.Outage = 0, 0, 0, 0
	c.Brokers, c.BrokerFaults = 1, false
	c.DrainTimeout = 3 * time.Minute
	return c
}

// ParseFlags reads a Config from args, starting from the defaults of the
// scenario named by --scenario (DefaultConfig without it); the other flags
// override the scenario's figures.
func ParseFlags(args []string, stderr io.Writer) (Config, error) {
	// A first pass finds the scenario, a second parses onto its defaults.
	probe := DefaultConfig()
	fs, _ := flagSet(&probe, io.Discard)
	perr := fs.Parse(args)
	c, err := ScenarioConfig(probe.Scenario)
	if err != nil && !errors.Is(perr, flag.ErrHelp) {
		return Config{}, err
	}
	if err != nil {
		c = DefaultConfig()
	}
	// The second pass also reports a parse error, or answers -h with the
	// scenario's defaults.
	return parseOnto(c, args, stderr)
}

func parseOnto(c Config, args []string, stderr io.Writer) (Config, error) {
	fs, kill := flagSet(&c, stderr)
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	c.Kill = nil
	for _, s := range strings.Split(*kill, ",") {
		if s = strings.TrimSpace(s); s != "" {
			c.Kill = append(c.Kill, s)
		}
	}
	return c, c.Validate()
}

// flagSet binds the flags to c; the returned string is --kill, split by
// the caller.
func flagSet(c *Config, stderr io.Writer) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet("devstack chaos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	kill := strings.Join(c.Kill, ",")
	sched := string(c.Schedule)
	fs.StringVar(&c.Scenario, "scenario", c.Scenario, "defaults to start from: "+strings.Join(Scenarios, ", ")+" (see docs/chaos.md)")
	fs.IntVar(&c.Users, "users", c.Users, "users to seed")
	fs.Int64Var(&c.StartID, "start-id", c.StartID, "first user id")
	fs.Int64Var(&c.Balance, "balance", c.Balance, "starting balance per user (minor units)")
	fs.IntVar(&c.Payments, "payments", c.Payments, "payments to send")
	fs.Float64Var(&c.Rate, "rate", c.Rate, "payments per second (new payments; retries come on top)")
	fs.IntVar(&c.Clients, "clients", c.Clients, "concurrent clients")
	fs.StringVar(&kill, "kill", kill, "comma-separated services to SIGKILL (empty: none); of "+strings.Join(TargetNames(Targets), ","))
	fs.Func("schedule", "how the kills are spread: per-service or sequence (default "+sched+")", func(s string) error {
		c.Schedule = Schedule(s)
		return nil
	})
	fs.IntVar(&c.KillsPerService, "kills", c.KillsPerService, "per-service: SIGKILLs of the working process per service, at least, during the traffic")
	fs.IntVar(&c.QuickKills, "quick-kills", c.QuickKills, "per-service: how many of a consumer's kills are followed by quick kills 0.2-1.5 s after its restart (inside its group's rebalance)")
	fs.IntVar(&c.QuickBurst, "quick-burst", c.QuickBurst, "per-service: quick kills in a row after each such kill, each 0.2-1.5 s after the restart that follows the previous")
	fs.IntVar(&c.RestartKills, "restart-kills", c.RestartKills, "per-service: how many of a service's kills are followed by a kill within 0.2 s of its restart")
	fs.IntVar(&c.SequenceKills, "sequence-kills", c.SequenceKills, "sequence: SIGKILLs in all")
	fs.DurationVar(&c.GapMin, "kill-gap-min", c.GapMin, "sequence: least time between two kills")
	fs.DurationVar(&c.GapMax, "kill-gap-max", c.GapMax, "sequence: most time between two kills")
	fs.Int64Var(&c.KillSeed, "kill-seed", c.KillSeed, "random seed of the kill plan (0: random)")
	fs.Float64Var(&c.SimErrorRate, "sim-error-rate", c.SimErrorRate, "processor 500s without executing")
	fs.Float64Var(&c.SimLostRate, "sim-lost-rate", c.SimLostRate, "processor executes, then drops the reply")
	fs.Float64Var(&c.SimDecline, "sim-decline-rate", c.SimDecline, "processor declines (the payment fails, its hold is released)")
	fs.Int64Var(&c.SimSeed, "sim-seed", c.SimSeed, "processor-sim random seed (0: random)")
	fs.DurationVar(&c.Outage, "outage", c.Outage, "processor outage length (0: none)")
	fs.Float64Var(&c.OutageAt, "outage-at", c.OutageAt, "share of the payments sent when the outage starts")
	fs.IntVar(&c.Brokers, "brokers", c.Brokers, "devkafka brokers (leader moves need more than 1)")
	fs.BoolVar(&c.BrokerFaults, "broker-faults", c.BrokerFaults, "inject produce/fetch/commit/txn faults and leader moves")
	fs.DurationVar(&c.FaultEvery, "fault-every", c.FaultEvery, "mean time between broker faults")
	fs.DurationVar(&c.Liveness, "liveness", c.Liveness, "every payment must be final this long after the last kill (or the end of the traffic, if later)")
	fs.DurationVar(&c.DrainTimeout, "drain-timeout", c.DrainTimeout, "how long after the traffic the backlog may take to drain")
	fs.StringVar(&c.JSONPath, "json", c.JSONPath, "also write the report as JSON to this file")
	fs.BoolVar(&c.Quiet, "quiet", c.Quiet, "no progress lines")
	return fs, &kill
}

// Validate reports every problem at once.
func (c Config) Validate() error {
	var errs []error
	if c.Users < 1 || c.Payments < 1 || c.Clients < 1 || c.Rate <= 0 {
		errs = append(errs, fmt.Errorf("users %d, payments %d, clients %d, rate %g: want all > 0", c.Users, c.Payments, c.Clients, c.Rate))
	}
	if c.StartID < 1 || c.Balance < 0 {
		errs = append(errs, fmt.Errorf("start-id %d, balance %d: want start-id > 0, balance >= 0", c.StartID, c.Balance))
	}
	for _, s := range c.Kill {
		if _, ok := targetByName(s); !ok {
			errs = append(errs, fmt.Errorf("kill %q: want some of %s (never devkafka)", s, strings.Join(TargetNames(Targets), ",")))
		}
	}
	switch c.Schedule {
	case PerService:
		if c.KillsPerService < 0 || c.QuickKills < 0 || c.RestartKills < 0 || c.QuickBurst < 1 {
			errs = append(errs, fmt.Errorf("kills %d, quick-kills %d, restart-kills %d, quick-burst %d: want >= 0, and a burst >= 1",
				c.KillsPerService, c.QuickKills, c.RestartKills, c.QuickBurst))
		}
		if c.QuickKills+c.RestartKills > c.KillsPerService {
			errs = append(errs, fmt.Errorf("quick-kills %d + restart-kills %d: want at most kills %d (each follows one of them)",
				c.QuickKills, c.RestartKills, c.KillsPerService))
		}
	case Sequence:
		if c.SequenceKills < 0 {
			errs = append(errs, fmt.Errorf("sequence-kills %d: want >= 0", c.SequenceKills))
		}
		if c.GapMin <= 0 || c.GapMax < c.GapMin {
			errs = append(errs, fmt.Errorf("kill-gap-min %v, kill-gap-max %v: want 0 < min <= max", c.GapMin, c.GapMax))
		}
	default:
		errs = append(errs, fmt.Errorf("schedule %q: want %s or %s", c.Schedule, PerService, Sequence))
	}
	for name, r := range map[string]float64{"sim-error-rate": c.SimErrorRate, "sim-lost-rate": c.SimLostRate, "sim-decline-rate": c.SimDecline, "outage-at": c.OutageAt} {
		if r < 0 || r > 1 {
			errs = append(errs, fmt.Errorf("%s %g: want [0,1]", name, r))
		}
	}
	if c.Brokers < 1 {
		errs = append(errs, fmt.Errorf("brokers %d: want >= 1", c.Brokers))
	}
	if c.BrokerFaults && c.FaultEvery <= 0 {
		errs = append(errs, fmt.Errorf("fault-every %v: want > 0", c.FaultEvery))
	}
	if c.Liveness <= 0 || c.DrainTimeout <= 0 {
		errs = append(errs, fmt.Errorf("liveness %v, drain-timeout %v: want > 0", c.Liveness, c.DrainTimeout))
	}
	return errors.Join(errs...)
}
