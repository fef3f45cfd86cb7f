package loadgen

import (
	"time"

	"github.com/finsvc/finance/loadtest/internal/check"
	"github.com/finsvc/finance/loadtest/internal/scenario"
)

// Status is the live state shown by the progress line.
type Status struct {
	Phase    string
	Elapsed  time.Duration
	Total    time.Duration
	Sent     int64
	OK       int64
	Failed   int64
	InFlight int64
	WriteP99 float64
	ReadP99  float64
	Backlog  int64
	Unknown  int64
	ProcRate float64
	Limit    float64
}

// Sample is one second of the system's state, by wall-clock time. Its zero
// counts are left out of results.json (omitzero), as are a Second's: most
// of a run's seconds are in the kept runs, and most of their fields are 0
// (no outage, no reads in a burst), so that keeps the kept runs small;
// reading them back gives the same zeros.
type Sample struct {
	T     float64 `json:"t"`
	Phase string  `json:"phase"`
	// Processor calls and executions per second (the simulator's counters).
	ProcCalls       float64 `json:"proc_calls_per_s,omitzero"`
	ProcExecuted    float64 `json:"proc_executed_per_s,omitzero"`
	ProcRateLimited float64 `json:"proc_rate_limited_per_s,omitzero"`
	ProcOutage      float64 `json:"proc_outage_rejected_per_s,omitzero"`
	OutageActive    bool    `json:"outage_active,omitzero"`
	// Backlog: the pipeline's accepted + processing payments of the run;
	// the as-is service's payments in flight (it has no queue).
	Backlog int64 `json:"backlog,omitzero"`
	Unknown int64 `json:"unknown,omitzero"`
	// NoBacklog marks a sample whose backlog could not be read (the
	// database did not answer in time): Backlog and Unknown mean nothing.
	NoBacklog bool `json:"no_backlog,omitempty"`
	// NoProcessor marks a sample whose processor counters could not be
	// read; its rates are then averaged into the next sample.
	NoProcessor bool `json:"no_processor,omitempty"`
	// InFlight are the generator's requests awaiting an answer.
	InFlight int64 `json:"in_flight,omitzero"`
	// WritesOK and ReadsOK are the 2xx answers that arrived this second.
	WritesOK float64 `json:"writes_ok_per_s,omitzero"`
	ReadsOK  float64 `json:"reads_ok_per_s,omitzero"`
	// Steal is the share of the machine's CPU time the hypervisor gave to
	// other guests in the last second (hostcpu).
	Steal float64 `json:"machine_steal_share,omitzero"`
	Err   string  `json:"err,omitempty"`
}

// OutageWindow is when the processor was down, in seconds since the start.
type OutageWindow struct {
	Start float64 `json:"start_s"`
	End   float64 `json:"end_s"`
	Err   string  `json:"err,omitempty"`
}

// Drain is how the backlog emptied after a burst or an outage.
type Drain struct {
	Applicable bool    `json:"applicable"`
	Peak       int64   `json:"peak_backlog"`
	PeakAt     float64 `json:"peak_at_s"`
	// PendingDrained: no payment accepted or processing any more, at
	// PendingDrainedAt (the first sample after the peak).
	PendingDrained   bool    `json:"pending_drained"`
	PendingDrainedAt float64 `json:"pending_drained_at_s"`
	// Drained: nothing open at all, unknown payments included.
	Drained     bool    `json:"drained"`
	DrainedAt   float64 `json:"drained_at_s"`
	UnknownLeft int64   `json:"unknown_left"`
	TimedOut    bool    `json:"timed_out"`
	Deadline    float64 `json:"deadline_s"`
	// ExecRate is the processor's executions per second from the peak
	// until the pending backlog was empty, from the executions' own
	// timestamps; RateOfLimit is ExecRate / L.
	ExecRate    float64 `json:"exec_rate_per_s"`
	RateOfLimit float64 `json:"rate_of_limit"`
	// Executions counted in that window.
	Executions int `json:"executions_in_window"`
}

// Result is everything a run measured, before the report adds goals.
type Result struct {
	RunID       string            `json:"run_id"`
	StartedAt   time.Time         `json:"started_at"`
	LoadEndedAt time.Time         `json:"load_ended_at"`
	EndedAt     time.Time         `json:"ended_at"`
	Workload    scenario.Workload `json:"workload"`
	Writes      OpSummary         `json:"writes"`
	Reads       OpSummary         `json:"reads"`
	// SendLag is how late the generator sent requests after their
	// intended time: waiting for a free connection (--max-conns) and for
	// the CPU, which it shares with the target on one machine.
	SendLag Percentiles `json:"send_lag"`
	// GeneratorCPU is the CPU time the load generator itself used during
	// the load and drain, in seconds.
	GeneratorCPU float64 `json:"generator_cpu_seconds"`
	// MachineSteal is the share of the machine's CPU time that the
	// hypervisor gave to other guests during the load and drain
	// (hostcpu): a run that lost some ran on a slower machine than one
	// that lost none. Nil: not measured (a run from before it was, or not
	// Linux).
	MachineSteal *float64 `json:"machine_steal_share,omitzero"`
	// Seconds are the buckets of BucketSeconds each.
	BucketSeconds float64       `json:"bucket_seconds"`
	Seconds       []Second      `json:"seconds"`
	Samples       []Sample      `json:"samples"`
	Outage        *OutageWindow `json:"outage,omitempty"`
	Drain         Drain         `json:"drain"`
	// Poll is what the status pollers measured (scenarios with pollers).
	Poll     *PollStats   `json:"poll,omitempty"`
	Check    check.Report `json:"check"`
	CheckErr string       `json:"check_error,omitempty"`
}
