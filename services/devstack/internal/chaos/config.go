// Package chaos is `devstack chaos`: it starts the whole pipeline, seeds
// users, sends payments over HTTP as clients would (retrying with the same
// Idempotency-Key), and meanwhile SIGKILLs the services at random instants,
// injects broker faults through devkafka's control API and puts the
// processor simulator into an outage. It then stops the traffic, waits for
// the backlog to drain, runs `financectl reconcile` and the invariant checker
// (pkg/verify), and reports what was lost, paid twice, or is out of balance.
package chaos

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"
)

// Config is one chaos run.
type Config struct {
	Users    int   // users seeded for the run
	StartID  int64 // first user id
	Balance  int64 // starting balance of each user, minor units
	Payments int   // payments sent
	Rate     float64
	Clients  int // concurrent clients

	// Kill lists the services to SIGKILL; KillsPerService is how many times
	// each is killed at least, spread over the traffic.
	Kill            []string
	KillsPerService int

	SimErrorRate float64 // processor-sim SIM_ERROR_RATE
	SimLostRate  float64 // processor-sim SIM_LOST_RESPONSE_RATE
	SimDecline   float64 // processor-sim SIM_DECLINE_RATE
	SimSeed      int64   // 0: random
	Outage       time.Duration
	OutageAt     float64 // share of the payments sent before the outage starts

	Brokers      int  // devkafka brokers
	BrokerFaults bool // inject faults through devkafka's control API
	FaultEvery   time.Duration

	DrainTimeout time.Duration
	JSONPath     string // also write the report as JSON here
	Quiet        bool   // no progress lines
}

// Services are the services of ours that may be killed. devkafka is not one:
// a SIGKILLed kfake loses open transactions (see docs/chaos.md).
var Services = []string{"gateway", "outbox-relay", "dispatcher", "status-consumer", "processor-sim"}

// DefaultConfig is `make chaos`: the figures of the issue.
func DefaultConfig() Config {
	return Config{
		Users: 1000, StartID: 2_000_000, Balance: 6_000, Payments: 5000, Rate: 10, Clients: 48,
		Kill: Services, KillsPerService: 10,
		SimErrorRate: 0.05, SimLostRate: 0.02, Outage: 20 * time.Second, OutageAt: 0.4,
		Brokers: 3, BrokerFaults: true, FaultEvery: 4 * time.Second,
		DrainTimeout: 5 * time.Minute,
	}
}

// ParseFlags reads a Config from args, starting from DefaultConfig.
func ParseFlags(args []string, stderr io.Writer) (Config, error) {
	c := DefaultConfig()
	fs := flag.NewFlagSet("devstack chaos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	kill := strings.Join(c.Kill, ",")
	fs.IntVar(&c.Users, "users", c.Users, "users to seed")
	fs.Int64Var(&c.StartID, "start-id", c.StartID, "first user id")
	fs.Int64Var(&c.Balance, "balance", c.Balance, "starting balance per user (minor units)")
	fs.IntVar(&c.Payments, "payments", c.Payments, "payments to send")
	fs.Float64Var(&c.Rate, "rate", c.Rate, "payments per second (new payments; retries come on top)")
	fs.IntVar(&c.Clients, "clients", c.Clients, "concurrent clients")
	fs.StringVar(&kill, "kill", kill, "comma-separated services to SIGKILL (empty: none)")
	fs.IntVar(&c.KillsPerService, "kills", c.KillsPerService, "SIGKILLs per service, at least, during the traffic")
	fs.Float64Var(&c.SimErrorRate, "sim-error-rate", c.SimErrorRate, "processor 500s without executing")
	fs.Float64Var(&c.SimLostRate, "sim-lost-rate", c.SimLostRate, "processor executes, then drops the reply")
	fs.Float64Var(&c.SimDecline, "sim-decline-rate", c.SimDecline, "processor declines (the payment fails, its hold is released)")
	fs.Int64Var(&c.SimSeed, "sim-seed", c.SimSeed, "processor-sim random seed (0: random)")
	fs.DurationVar(&c.Outage, "outage", c.Outage, "processor outage length (0: none)")
	fs.Float64Var(&c.OutageAt, "outage-at", c.OutageAt, "share of the payments sent when the outage starts")
	fs.IntVar(&c.Brokers, "brokers", c.Brokers, "devkafka brokers (leader moves need more than 1)")
	fs.BoolVar(&c.BrokerFaults, "broker-faults", c.BrokerFaults, "inject produce/fetch/commit/txn faults and leader moves")
	fs.DurationVar(&c.FaultEvery, "fault-every", c.FaultEvery, "mean time between broker faults")
	fs.DurationVar(&c.DrainTimeout, "drain-timeout", c.DrainTimeout, "how long the backlog may take to drain")
	fs.StringVar(&c.JSONPath, "json", "", "also write the report as JSON to this file")
	fs.BoolVar(&c.Quiet, "quiet", false, "no progress lines")
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	c.Kill = nil
	for _, s := range strings.Split(kill, ",") {
		if s = strings.TrimSpace(s); s != "" {
			c.Kill = append(c.Kill, s)
		}
	}
	return c, c.Validate()
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
		known := false
		for _, k := range Services {
			known = known || k == s
		}
		if !known {
			errs = append(errs, fmt.Errorf("kill %q: want some of %s (never devkafka)", s, strings.Join(Services, ",")))
		}
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
	return errors.Join(errs...)
}
