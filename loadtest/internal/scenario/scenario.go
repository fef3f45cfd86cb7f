// Package scenario defines the load-test scenarios and resolves a scenario
// plus command-line overrides into one concrete, open-model workload.
//
// The workload is open: requests arrive at their scheduled times whatever
// the responses do. Users, arrival rate and think time are tied by
// rate = users / think: each of the users sends one request every think
// time, round robin, so "10,000 concurrent users thinking 10 s" is an
// arrival rate of 1,000 requests per second.
package scenario

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"
)

// Outage is a processor outage injected during the run.
type Outage struct {
	At       time.Duration `json:"at"`
	Duration time.Duration `json:"duration"`
}

// Scenario is a named workload with its defaults.
type Scenario struct {
	Name    string
	Summary string
	Users   int
	// Rate is the arrival rate in requests per second, all users together.
	// When zero, WritesOfLimit sets it from the processor's limit L.
	Rate float64
	// WritesOfLimit sets the write rate to this share of L (e.g. 0.8).
	WritesOfLimit float64
	Duration      time.Duration
	ReadRatio     float64
	Outage        *Outage
	// Burst marks a scenario whose backlog drains after the load: the
	// report draws the drain curve and checks the burst targets.
	Burst bool
	// NotInCI marks a scenario too long for CI.
	NotInCI bool
	// Pollers are clients that poll every accepted payment's status URL
	// about once a second until it is final (pipeline only).
	Pollers int
	// Credits makes the payments credits (positive amounts, adding funds)
	// instead of payments to merchants.
	Credits bool
	// Conns is the scenario's default connection limit (--max-conns): the
	// clients that send its payments.
	Conns int
}

// All returns every scenario, by name.
func All() map[string]Scenario {
	return map[string]Scenario{
		"read-heavy": {
			Name:    "read-heavy",
			Summary: "10,000 concurrent users, 95% reads (feeds), 5% payments; 10 s think time (1,000 requests/s)",
			Users:   10_000, Rate: 1_000, Duration: 60 * time.Second, ReadRatio: 0.95,
		},
		"burst": {
			Name:    "burst",
			Summary: "10,000 payments within one second, then the backlog drains at the processor's limit L",
			Users:   10_000, Rate: 10_000, Duration: time.Second, ReadRatio: 0, Burst: true,
		},
		"burst-poll": {
			Name: "burst-poll",
			Summary: "6,000 credits over 2,000 users sent at once through 64 connections while 16 clients poll " +
				"each pending payment once a second; every payment final within 1.15 × N/L (pipeline only)",
			Users: 2_000, Rate: 6_000, Duration: time.Second, ReadRatio: 0, Burst: true,
			Pollers: 16, Credits: true, Conns: 64,
		},
		"mixed": {
			Name:    "mixed",
			Summary: "payments at a steady 80% of L plus as many feed reads, for 2 minutes",
			Users:   10_000, WritesOfLimit: 0.8, Duration: 2 * time.Minute, ReadRatio: 0.5,
		},
		"outage": {
			Name: "outage",
			Summary: "payments at 50% of L plus as many reads for 3 minutes; the processor is down for 60 s " +
				"in the middle; the backlog must drain after it",
			Users: 10_000, WritesOfLimit: 0.5, Duration: 3 * time.Minute, ReadRatio: 0.5,
			Outage: &Outage{At: 60 * time.Second, Duration: 60 * time.Second},
		},
		"soak": {
			Name:    "soak",
			Summary: "mixed for 30 minutes (80% of L in payments, 80% reads): leaks, drift, slow growth; not run in CI",
			Users:   10_000, WritesOfLimit: 0.8, Duration: 30 * time.Minute, ReadRatio: 0.8, NotInCI: true,
		},
	}
}

// Names returns the scenario names, sorted.
func Names() []string {
	var n []string
	for k := range All() {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

// Lookup returns the scenario called name.
func Lookup(name string) (Scenario, error) {
	s, ok := All()[name]
	if !ok {
		return Scenario{}, fmt.Errorf("unknown scenario %q; want one of %s", name, strings.Join(Names(), ", "))
	}
	return s, nil
}

// Overrides are the command-line changes to a scenario; zero values keep
// the scenario's default. Think is the per-user think time.
type Overrides struct {
	Users          int
	Rate           float64
	Think          time.Duration
	Duration       time.Duration
	ReadRatio      float64
	ReadRatioSet   bool
	OutageAt       time.Duration
	OutageDuration time.Duration
	// Pollers, when set, replaces the scenario's status pollers.
	Pollers    int
	PollersSet bool
}

// Workload is a scenario resolved against the overrides and the processor's
// limit: what the generator runs.
type Workload struct {
	Scenario  string        `json:"scenario"`
	Users     int           `json:"users"`
	Rate      float64       `json:"rate_per_second"`
	Think     time.Duration `json:"think_time"`
	Duration  time.Duration `json:"duration"`
	ReadRatio float64       `json:"read_ratio"`
	Outage    *Outage       `json:"outage,omitempty"`
	Burst     bool          `json:"burst"`
	Limit     float64       `json:"processor_limit"`
	Pollers   int           `json:"pollers,omitempty"`
	Credits   bool          `json:"credits,omitempty"`
}

// Requests is how many requests the workload sends.
func (w Workload) Requests() int {
	return int(math.Round(w.Rate * w.Duration.Seconds()))
}

// IsRead reports whether request i is a feed read. Reads and writes are
// interleaved evenly and deterministically, so a run is reproducible.
func (w Workload) IsRead(i int) bool {
	wr := 1 - w.ReadRatio
	return math.Floor(float64(i+1)*wr) == math.Floor(float64(i)*wr)
}

// Writes is how many of the workload's requests are payments.
func (w Workload) Writes() int {
	return int(math.Floor(float64(w.Requests()) * (1 - w.ReadRatio)))
}

// Resolve applies o to s with the processor's limit and checks the result,
// reporting every problem at once.
func Resolve(s Scenario, o Overrides, limit float64) (Workload, error) {
	var errs []error
	w := Workload{Scenario: s.Name, Users: s.Users, Rate: s.Rate, Duration: s.Duration, ReadRatio: s.ReadRatio,
		Burst: s.Burst, Limit: limit, Pollers: s.Pollers, Credits: s.Credits}
	if s.Outage != nil {
		out := *s.Outage
		w.Outage = &out
	}
	if o.Users != 0 {
		w.Users = o.Users
	}
	if o.Duration != 0 {
		w.Duration = o.Duration
	}
	if o.ReadRatioSet {
		w.ReadRatio = o.ReadRatio
	}
	if o.PollersSet {
		w.Pollers = o.Pollers
	}
	if w.Pollers < 0 {
		errs = append(errs, fmt.Errorf("--pollers %d: want 0 or more", w.Pollers))
	}
	if w.ReadRatio < 0 || w.ReadRatio > 1 {
		errs = append(errs, fmt.Errorf("--read-ratio %v: want 0..1", w.ReadRatio))
	}
	if w.Rate == 0 && s.WritesOfLimit > 0 {
		if w.ReadRatio >= 1 {
			errs = append(errs, errors.New("this scenario sets its write rate from L: --read-ratio must be below 1"))
		} else {
			w.Rate = s.WritesOfLimit * limit / (1 - w.ReadRatio)
		}
	}
	switch {
	case o.Rate != 0 && o.Think != 0:
		if want := float64(w.Users) / o.Think.Seconds(); math.Abs(want-o.Rate) > 1e-6*want {
			errs = append(errs, fmt.Errorf("--rate %v and --think %s disagree: %d users thinking %s arrive at %.3g/s; give one of them",
				o.Rate, o.Think, w.Users, o.Think, want))
		}
		w.Rate = o.Rate
	case o.Rate != 0:
		w.Rate = o.Rate
	case o.Think != 0:
		w.Rate = float64(w.Users) / o.Think.Seconds()
	}
	if o.Users < 0 || w.Users < 1 {
		errs = append(errs, fmt.Errorf("--users %d: want at least 1", w.Users))
	}
	if o.Rate < 0 || o.Think < 0 {
		errs = append(errs, errors.New("--rate and --think must be positive"))
	}
	if !(w.Rate > 0) || math.IsInf(w.Rate, 0) {
		errs = append(errs, fmt.Errorf("arrival rate %v/s: want more than 0", w.Rate))
	}
	if w.Duration <= 0 {
		errs = append(errs, fmt.Errorf("--duration %s: want more than 0", w.Duration))
	}
	if o.OutageAt != 0 || o.OutageDuration != 0 {
		if w.Outage == nil {
			w.Outage = &Outage{At: w.Duration / 3, Duration: w.Duration / 3}
		}
		if o.OutageAt != 0 {
			w.Outage.At = o.OutageAt
		}
		if o.OutageDuration != 0 {
			w.Outage.Duration = o.OutageDuration
		}
	}
	if w.Outage != nil && (w.Outage.At < 0 || w.Outage.Duration <= 0 || w.Outage.At >= w.Duration) {
		errs = append(errs, fmt.Errorf("outage at %s for %s: want it to start within the %s run and last more than 0",
			w.Outage.At, w.Outage.Duration, w.Duration))
	}
	if len(errs) == 0 {
		w.Think = time.Duration(float64(w.Users) / w.Rate * float64(time.Second))
		if w.Requests() < 1 {
			errs = append(errs, fmt.Errorf("%v/s for %s sends no request", w.Rate, w.Duration))
		}
	}
	return w, errors.Join(errs...)
}
