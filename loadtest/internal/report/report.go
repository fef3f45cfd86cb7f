// Package report turns a run's result into its outputs: results.json, a
// Markdown summary and PNG plots, and judges the run: any non-zero
// invariant count fails it; the scenario's goals (e.g. the burst's p99
// acceptance under 100 ms) are reported as met or not.
package report

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/finsvc/finance/loadtest/internal/loadgen"
	"github.com/finsvc/finance/loadtest/internal/target"
	"github.com/finsvc/finance/pkg/simclient"
	"github.com/finsvc/finance/pkg/verify"
)

// Machine names the machine a run was measured on.
type Machine struct {
	Hostname string  `json:"hostname"`
	CPUs     int     `json:"cpus"`
	CPUModel string  `json:"cpu_model,omitempty"`
	MemGiB   float64 `json:"mem_gib"`
	OS       string  `json:"os"`
	Kernel   string  `json:"kernel,omitempty"`
	Go       string  `json:"go"`
	// LoadAvg is /proc/loadavg when the report was made: other work on a
	// shared machine skews the numbers.
	LoadAvg string `json:"loadavg,omitempty"`
}

// String is a one-line description, e.g. "host (2 CPUs, 24 GiB, linux/amd64)".
func (m Machine) String() string {
	s := fmt.Sprintf("%s (%d CPUs", m.Hostname, m.CPUs)
	if m.CPUModel != "" {
		s += ", " + m.CPUModel
	}
	return s + fmt.Sprintf(", %.0f GiB RAM, %s, %s)", m.MemGiB, m.OS, m.Go)
}

// ThisMachine describes the machine the load generator runs on.
func ThisMachine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), OS: runtime.GOOS + "/" + runtime.GOARCH, Go: runtime.Version()}
	m.Hostname, _ = os.Hostname()
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		m.LoadAvg = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if f, err := os.Open("/proc/meminfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var kb float64
			if n, _ := fmt.Sscanf(sc.Text(), "MemTotal: %f kB", &kb); n == 1 {
				m.MemGiB = float64(int(kb/1024/1024*10+0.5)) / 10
			}
		}
		f.Close()
	}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	return m
}

// Goal is one of a scenario's targets and whether the run met it.
type Goal struct {
	Name string `json:"name"`
	Want string `json:"want"`
	Got  string `json:"got"`
	Met  bool   `json:"met"`
}

// Report is a judged run: what results.json holds.
type Report struct {
	Scenario  string             `json:"scenario"`
	Target    string             `json:"target"`
	TargetURL string             `json:"target_url"`
	SimURL    string             `json:"processor_url"`
	Command   string             `json:"command"`
	Machine   Machine            `json:"machine"`
	Sim       simclient.Settings `json:"processor_settings"`
	Result    *loadgen.Result    `json:"result"`
	Goals     []Goal             `json:"goals"`
	Passed    bool               `json:"passed"`
	Failures  []string           `json:"failures,omitempty"`
	Plots     []string           `json:"plots,omitempty"`
	// CPU is what the target's processes used during the run (load and
	// drain), where their /metrics were given.
	CPU []ProcessCPU `json:"cpu,omitempty"`
}

// Judge builds the report of res: the verdict (correctness only) and the
// scenario's goals.
func Judge(res *loadgen.Result, kind target.Kind, targetURL string, sim simclient.Settings, simURL, command string, m Machine) *Report {
	r := &Report{Scenario: res.Workload.Scenario, Target: string(kind), TargetURL: targetURL, SimURL: simURL,
		Command: command, Machine: m, Sim: sim, Result: res}
	c := res.Check
	switch {
	case res.CheckErr != "":
		r.Failures = append(r.Failures, "the invariant checker could not run: "+res.CheckErr)
	default:
		for _, f := range []struct {
			name string
			n    int64
		}{{"lost", c.Lost}, {"paid twice", c.PaidTwice}, {"stuck", c.Stuck}, {"balance mismatch", c.BalanceMismatch}} {
			if f.n != 0 {
				r.Failures = append(r.Failures, fmt.Sprintf("%s: %d", f.name, f.n))
			}
		}
	}
	if res.Outage != nil && res.Outage.Err != "" {
		r.Failures = append(r.Failures, "the outage could not be started: "+res.Outage.Err)
	}
	r.Passed = len(r.Failures) == 0
	r.Goals = goals(res, kind)
	return r
}

func goals(res *loadgen.Result, kind target.Kind) []Goal {
	w := res.Writes
	var g []Goal
	clean := Goal{Name: "invariant checker", Want: "0 lost, 0 paid twice, 0 stuck, 0 balance mismatches",
		Got: fmt.Sprintf("%d lost, %d paid twice, %d stuck, %d balance mismatches",
			res.Check.Lost, res.Check.PaidTwice, res.Check.Stuck, res.Check.BalanceMismatch),
		Met: res.CheckErr == "" && !res.Check.Failed()}
	if res.CheckErr != "" {
		clean.Got = "checker error: " + res.CheckErr
	}
	accepted := "202"
	if kind == target.Legacy {
		accepted = "2xx (201: executed and stored)"
	}
	switch {
	case res.Poll != nil && res.Workload.Burst:
		g = append(g,
			Goal{Name: "every payment answered " + accepted, Want: fmt.Sprintf("%d of %d", w.Sent, w.Sent),
				Got: fmt.Sprintf("%d of %d", w.ByClass[string(target.OK)], w.Sent),
				Met: w.Sent > 0 && w.ByClass[string(target.OK)] == w.Sent})
		g = append(g, pollGoals(*res.Poll)...)
	case res.Workload.Burst:
		g = append(g,
			Goal{Name: "every payment answered " + accepted, Want: fmt.Sprintf("%d of %d", w.Sent, w.Sent),
				Got: fmt.Sprintf("%d of %d", w.ByClass[string(target.OK)], w.Sent),
				Met: w.Sent > 0 && w.ByClass[string(target.OK)] == w.Sent},
			Goal{Name: "p99 acceptance latency", Want: "< 100 ms", Got: fmt.Sprintf("%.1f ms", w.Latency.P99),
				Met: w.Latency.Count > 0 && w.Latency.P99 < 100},
		)
		d := res.Drain
		dg := Goal{Name: "drain rate", Want: fmt.Sprintf("≥ 0.98 × L = %.0f/s", 0.98*res.Workload.Limit)}
		switch {
		case !d.Applicable:
			dg.Got = fmt.Sprintf("no backlog to drain; the processor executed %.0f/s at most", maxExec(res))
		default:
			dg.Got = fmt.Sprintf("%.1f/s (%.3f × L) over %d executions; %s", d.ExecRate, d.RateOfLimit, d.Executions, drainState(d))
			dg.Met = d.Drained && d.RateOfLimit >= 0.98
		}
		g = append(g, dg)
	case res.Workload.Outage != nil && res.Outage != nil:
		o := res.Outage
		var secs, stopped int
		for _, s := range res.Seconds {
			if s.T >= o.Start && s.T+res.BucketSeconds <= o.End && s.Writes.Sent > 0 {
				secs++
				if s.Writes.Failed > 0 || s.Writes.OK == 0 {
					stopped++
				}
			}
		}
		g = append(g, Goal{Name: "acceptance never stops during the outage",
			Want: "every second of the outage: payments answered " + accepted + ", none refused",
			Got:  fmt.Sprintf("%d of %d seconds with a refused or failed payment", stopped, secs),
			Met:  secs > 0 && stopped == 0})
		dg := Goal{Name: "backlog drains after the outage", Want: "backlog back to 0"}
		if res.Drain.Applicable {
			dg.Got = fmt.Sprintf("peak %d at %.0f s; %s", res.Drain.Peak, res.Drain.PeakAt, drainState(res.Drain))
			dg.Met = res.Drain.Drained
		} else {
			dg.Got = "no backlog: payments during the outage were refused, not queued"
		}
		g = append(g, dg)
	}
	return append(g, clean)
}

// pollGoals are burst-poll's targets: every payment final within
// 1.15 × N/L of the burst's start, and its final status written (visible
// to a poll) within 1 s of the processor's answer at p99.
func pollGoals(ps loadgen.PollStats) []Goal {
	drain := Goal{Name: "every payment final (drain with clients polling)",
		Want: fmt.Sprintf("≤ %.2f × N/L = %.1f s after the burst's start", loadgen.DrainGoal, loadgen.DrainGoal*ps.IdealDrain),
		Got: fmt.Sprintf("%d of %d final, the last at %.1f s (%.2f × N/L; N/L = %.1f s)",
			ps.SeenFinal, ps.Followed, ps.LastFinalAt, ps.DrainOfIdeal, ps.IdealDrain),
		Met: ps.DrainMet()}
	visible := Goal{Name: "answer→visible p99 (server: updated_at − answer)", Want: "< 1000 ms",
		Got: fmt.Sprintf("%.1f ms over %d executed payments (client-observed p99 %.1f ms)",
			ps.ServerVisible.P99, ps.Executed, ps.ClientVisible.P99),
		Met: ps.Executed > 0 && ps.ServerVisible.P99 < 1000}
	return []Goal{drain, visible}
}

// drainState says how far the backlog drained.
func drainState(d loadgen.Drain) string {
	switch {
	case d.Drained:
		return fmt.Sprintf("empty at %.1f s", d.DrainedAt)
	case d.PendingDrained:
		return fmt.Sprintf("nothing pending from %.1f s, but %d unknown never resolved", d.PendingDrainedAt, d.UnknownLeft)
	case d.TimedOut:
		return fmt.Sprintf("not empty at the deadline (%.0f s)", d.Deadline)
	default:
		return "not empty"
	}
}

func maxExec(res *loadgen.Result) float64 {
	m := 0.0
	for _, s := range res.Samples {
		m = max(m, s.ProcExecuted)
	}
	return m
}

// Write writes results.json, summary.md and the plots into dir.
func Write(r *Report, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	plots, err := WritePlots(r, dir)
	r.Plots = plots
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "summary.md"), []byte(Markdown(r)), 0o644)
}

// Read loads a results.json.
func Read(path string) (*Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if r.Result == nil {
		return nil, fmt.Errorf("%s: no result", path)
	}
	return &r, nil
}

// Markdown is the human summary of r.
func Markdown(r *Report) string {
	res := r.Result
	w := res.Workload
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	verdict := "**PASSED** (the invariant checker is clean)"
	if !r.Passed {
		verdict = "**FAILED**: " + strings.Join(r.Failures, "; ")
	}
	p("# Load test: %s → %s\n\n", r.Scenario, r.Target)
	p("%s\n\n", verdict)
	p("- Run `%s`, %s, %s of load, finished %s\n", res.RunID, res.StartedAt.UTC().Format(time.RFC3339),
		w.Duration, res.EndedAt.UTC().Format(time.RFC3339))
	p("- Machine: %s; load average at the end %s\n", r.Machine, r.Machine.LoadAvg)
	p("- Target: %s at %s; processor simulator at %s (API %s, L = %.0f/s, latency p50 %s / p99 %s)\n",
		r.Target, r.TargetURL, r.SimURL, r.Sim.API, w.Limit, r.Sim.LatencyP50, r.Sim.LatencyP99)
	p("- Workload: %d users, %.1f requests/s (open model; think time %s per user), %.0f%% reads, %d requests",
		w.Users, w.Rate, w.Think.Round(time.Millisecond), w.ReadRatio*100, res.Writes.Sent+res.Reads.Sent)
	if w.Outage != nil {
		p("; processor outage of %s at %s", w.Outage.Duration, w.Outage.At)
	}
	p("\n- Command: `%s`\n\n", r.Command)

	p("## Correctness\n\n")
	c := res.Check
	if res.CheckErr != "" {
		p("The checker could not run: %s\n\n", res.CheckErr)
	}
	p("| lost | paid twice | stuck | balance mismatch |\n|---:|---:|---:|---:|\n| %d | %d | %d | %d |\n\n",
		c.Lost, c.PaidTwice, c.Stuck, c.BalanceMismatch)
	p("| what | count |\n|---|---:|\n")
	row := func(k string, v int64) { p("| %s | %d |\n", k, v) }
	row("payment requests", c.Requests)
	row("told succeeded / accepted (2xx)", c.ToldOK)
	row("told failed (not 2xx)", c.ToldFailed)
	row("unresolved for the client (timeout, dropped, 500/502/504)", c.Unresolved)
	row("processor executions for the run's users", c.Executions)
	if r.Target == string(target.Pipeline) {
		row("payments in the database", c.InDatabase)
		for _, s := range sortedKeys(c.ByStatus) {
			row("  status "+s, c.ByStatus[s])
		}
		row("accepted but missing", c.AcceptedMissing)
		row("executed but recorded failed", c.ExecutedButFailed)
		row("client error, yet in the database (a retry with the key resolves it)", c.ClientErrorsInDatabase)
	} else {
		row("**executed by the processor, client told it failed**", c.ExecutedToldFailed)
		row("**unresolved requests the processor did execute**", c.UnresolvedExecuted)
		row("executed but not stored (missing from the feed)", c.ExecutedNotRecorded)
		row("told succeeded, not executed", c.ToldOKNotExecuted)
	}
	row("stored as succeeded, never executed", c.RecordedNotExecuted)
	row("executions matching no payment", c.OrphanExecutions)
	p("\n")
	for _, n := range c.Notes {
		p("> %s\n>\n", n)
	}
	if len(c.Examples) > 0 {
		p("\nFirst problems found:\n\n")
		for _, e := range c.Examples {
			p("- %s\n", e)
		}
	}
	if c.Ledger != nil {
		p("\nThe ledger's invariants (pkg/verify, as `financectl verify`):\n\n```\n")
		verify.WriteFindings(&b, c.Ledger.Findings)
		p("```\n")
	}
	p("\n## Goals\n\n| goal | want | got | met |\n|---|---|---|:-:|\n")
	for _, g := range r.Goals {
		met := "no"
		if g.Met {
			met = "yes"
		}
		p("| %s | %s | %s | %s |\n", g.Name, g.Want, g.Got, met)
	}

	p("\n## Latency and throughput\n\nLatency is measured from each request's intended send time.\n\n")
	p("| requests | sent | answered | 2xx/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, o := range []struct {
		name string
		s    loadgen.OpSummary
	}{{"payments", res.Writes}, {"feeds", res.Reads}} {
		l := o.s.Latency
		p("| %s | %d | %d | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f |\n", o.name, o.s.Sent, o.s.Completed, o.s.OKPerSecond,
			l.P50, l.P90, l.P99, l.P999, l.Max)
	}
	p("\n| requests | %s |\n|---|%s\n", strings.Join(classNames(), " | "), strings.Repeat("---:|", len(classNames())))
	for _, o := range []struct {
		name string
		s    loadgen.OpSummary
	}{{"payments", res.Writes}, {"feeds", res.Reads}} {
		var cells []string
		for _, cl := range classNames() {
			cells = append(cells, fmt.Sprint(o.s.ByClass[cl]))
		}
		p("| %s | %s |\n", o.name, strings.Join(cells, " | "))
	}
	p("\nHTTP status codes: payments %s; feeds %s.\n", codes(res.Writes.ByCode), codes(res.Reads.ByCode))
	if n := res.Writes.Retried; n > 0 {
		p("\n%d payments were sent twice, with the same Idempotency-Key, because the target closed the connection before answering the first try; each is counted once, its latency from the first try's intended time.\n", n)
	}
	for _, o := range []struct {
		name string
		s    loadgen.OpSummary
	}{{"payments", res.Writes}, {"feeds", res.Reads}} {
		for _, cl := range sortedKeys(toCounts(o.s.Errors)) {
			p("\nFirst %s error (%s): `%s`\n", o.name, cl, strings.ReplaceAll(o.s.Errors[cl], "`", "'"))
		}
	}
	p("\nThe generator sent requests late by p99 %.1f ms, max %.1f ms after their intended time (waiting for a connection "+
		"or for the CPU it shares with the target), and used %.1f CPU-seconds itself.\n",
		res.SendLag.P99, res.SendLag.Max, res.GeneratorCPU)
	if res.MachineSteal != nil {
		p("\n%s\n", StealSentence(*res.MachineSteal, res.Samples))
	}

	if d := res.Drain; d.Applicable {
		p("\n## Drain\n\nBacklog peak %d at %.1f s; %s. From the peak until nothing was pending the processor executed "+
			"%d of the run's payments at %.1f/s (%.3f × L), by the executions' own timestamps.\n",
			d.Peak, d.PeakAt, drainState(d), d.Executions, d.ExecRate, d.RateOfLimit)
	}
	if ps := res.Poll; ps != nil {
		p("\n## Status polling\n\n%d clients polled each accepted payment's status URL about once a second until it was final: "+
			"%d payments followed, %d seen final, %d polls (%d failed). The last final status was written %.1f s after the burst's "+
			"start (%.2f × N/L, N/L = %.1f s) and first seen by a poll at %.1f s.\n\n"+
			"Answer→visible, from the processor's answer (the simulator's record, by key `payment-<uid>`: `answered_at`, or `executed_at` from a simulator that does not say) of the %d executed payments:\n\n"+
			"| figure | p50 ms | p90 ms | p99 ms | max ms |\n|---|---:|---:|---:|---:|\n"+
			"| server: `updated_at` of the final status − the processor's answer | %.1f | %.1f | %.1f | %.1f |\n"+
			"| client: first poll that saw it final − the processor's answer (adds up to the 1 s poll interval) | %.1f | %.1f | %.1f | %.1f |\n",
			ps.Pollers, ps.Followed, ps.SeenFinal, ps.Polls, ps.PollErrors, ps.LastFinalAt, ps.DrainOfIdeal, ps.IdealDrain, ps.LastSeenAt,
			ps.Executed,
			ps.ServerVisible.P50, ps.ServerVisible.P90, ps.ServerVisible.P99, ps.ServerVisible.Max,
			ps.ClientVisible.P50, ps.ClientVisible.P90, ps.ClientVisible.P99, ps.ClientVisible.Max)
	}
	if res.Outage != nil {
		p("\nProcessor outage from %.1f s to %.1f s.\n", res.Outage.Start, res.Outage.End)
	}
	if len(r.CPU) > 0 {
		ok := res.Writes.ByClass[string(target.OK)]
		var local []string
		for _, c := range r.CPU {
			if strings.HasPrefix(c.URL, ProcPrefix) {
				local = append(local, c.Name)
			}
		}
		p("\n## CPU used by the system under test\n\nFrom each process's `process_cpu_seconds_total`, from before the load to after the drain")
		if len(local) > 0 {
			p("; for %s, every process of that name on this machine, from `/proc` (`--local-cpu`).", strings.Join(local, ", "))
		} else {
			p(" (processes without `/metrics`, such as PostgreSQL and the Kafka broker, are not included: see `--local-cpu`).")
		}
		p("\n\n| process | CPU seconds | ms per accepted payment |\n|---|---:|---:|\n")
		var total float64
		for _, c := range r.CPU {
			if c.Err != "" {
				p("| %s | (%s) | |\n", c.Name, c.Err)
				continue
			}
			total += c.Seconds
			p("| %s | %.2f | %s |\n", c.Name, c.Seconds, perPayment(c.Seconds, ok))
		}
		p("| **total** | %.2f | %s |\n", total, perPayment(total, ok))
	}
	if len(r.Plots) > 0 {
		p("\n## Plots\n\n")
		for _, f := range r.Plots {
			p("![%s](%s)\n\n", strings.TrimSuffix(f, ".png"), f)
		}
	}
	return b.String()
}

func perPayment(sec float64, payments int64) string {
	if payments == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", sec*1000/float64(payments))
}

func toCounts(m map[string]string) map[string]int64 {
	out := map[string]int64{}
	for k := range m {
		out[k] = 1
	}
	return out
}

func classNames() []string {
	var n []string
	for _, c := range target.Classes() {
		n = append(n, string(c))
	}
	return n
}

func codes(m map[string]int64) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range sortedKeys(m) {
		parts = append(parts, fmt.Sprintf("%s×%d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

func sortedKeys(m map[string]int64) []string {
	var k []string
	for s := range m {
		k = append(k, s)
	}
	sort.Strings(k)
	return k
}

// StealSentence says how much of the machine's CPU time the hypervisor gave
// to other guests during the run (share), and in its worst second when
// samples has them.
func StealSentence(share float64, samples []loadgen.Sample) string {
	worst := loadgen.Sample{}
	for _, s := range samples {
		if s.Steal > worst.Steal {
			worst = s
		}
	}
	if share == 0 && worst.Steal == 0 {
		return "The hypervisor took none of the machine's CPU time during the run (steal 0%): it ran at its own speed throughout."
	}
	inWorst := ""
	if worst.Steal > 0 {
		inWorst = fmt.Sprintf("; %.0f%% in its worst second, at %.0f s", worst.Steal*100, worst.T)
	}
	return fmt.Sprintf("The hypervisor gave %.1f%% of the machine's CPU time to other guests during the run (steal%s): "+
		"the machine was that much slower than its own, so compare this run only with runs that lost as little.", share*100, inWorst)
}
