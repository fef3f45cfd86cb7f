package reads

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/finsvc/finance/loadtest/internal/report"
)

// HostileGoalRatio is issue 16's bound: a hostile client may raise another
// user's p99 by at most 20%.
const HostileGoalRatio = 1.2

// HostileMinRate is the share of --hostile-rate the hostile must have
// offered, and HostileMaxLag how late its schedule may run (p99, ms), for
// the run to show anything: a generator that fell behind did not test the
// gateway at that rate. Offered counts the requests sent and those due
// while every hostile connection waited on the gateway: a gateway that
// holds an abusive client's connections (a tarpit) is what is tested, not
// the client falling behind.
const (
	HostileMinRate = 0.9
	HostileMaxLag  = 100.0
)

// HostileMaxSteal is the most of the machine's CPU time the hypervisor may
// have given to other guests in any one phase for the phases to compare
// (hostcpu): a phase that lost more ran on a slower machine than the
// others, whichever side it was on, and its victims' p99 says so.
const HostileMaxSteal = 0.01

// HostileReport is a hostile run's results.json.
type HostileReport struct {
	Kind     string              `json:"kind"` // "hostile": tells it from a money run's results.json
	Scenario string              `json:"scenario"`
	Target   string              `json:"target"`
	URL      string              `json:"url"`
	Command  string              `json:"command"`
	Machine  report.Machine      `json:"machine"`
	Settings HostileSettings     `json:"settings"`
	Result   *HostileResult      `json:"result"`
	CPU      []report.ProcessCPU `json:"cpu"`
	// P99Ratio is the pooled hostile phases' victim p99 over the quiet
	// phases'.
	P99Ratio float64       `json:"p99_ratio"`
	Goals    []report.Goal `json:"goals"`
}

// HostileSettings are the run's resolved settings.
type HostileSettings struct {
	FirstUser       int64    `json:"first_user"`
	Users           int      `json:"users"`
	Rate            float64  `json:"rate"`
	PaymentRatio    float64  `json:"payment_ratio"`
	BalanceRatio    float64  `json:"balance_ratio"`
	HostileAccounts int      `json:"hostile_accounts"`
	HostileRate     float64  `json:"hostile_rate"`
	HostileSource   string   `json:"hostile_source"`
	HostileConns    int      `json:"hostile_conns"`
	HostileKinds    []string `json:"hostile_kinds"`
	Phases          int      `json:"phases"`
	Phase           string   `json:"phase"`
	Warmup          string   `json:"warmup"`
}

// HostileSettingsOf returns cfg's settings for the report.
func HostileSettingsOf(cfg HostileConfig) HostileSettings {
	return HostileSettings{FirstUser: cfg.FirstUser, Users: cfg.Users, Rate: cfg.Rate, PaymentRatio: cfg.PaymentRatio,
		BalanceRatio: cfg.BalanceRatio, HostileAccounts: cfg.Accounts, HostileRate: cfg.HostileRate,
		HostileSource: cfg.Source, HostileConns: cfg.HostileConns, HostileKinds: cfg.Kinds, Phases: cfg.Phases, Phase: cfg.Phase.String(),
		Warmup: cfg.Warmup.String()}
}

// Judge computes the p99 ratio and the goals: the victims' pooled p99 in
// the hostile phases at most HostileGoalRatio × that in the quiet ones, no
// victim error (no 429, no 5xx, nothing but 2xx), and the hostile offered
// at least HostileMinRate of its rate on schedule (HostileMaxLag), without
// which the first goal shows nothing.
func (r *HostileReport) Judge() {
	r.Kind = Hostile
	res := r.Result
	var g []report.Goal
	add := func(name, want, got string, met bool) {
		g = append(g, report.Goal{Name: name, Want: want, Got: got, Met: met})
	}
	r.P99Ratio = 0
	if res.Quiet.P99 > 0 {
		r.P99Ratio = round2(res.Hostile.P99 / res.Quiet.P99)
	}
	add("victims' p99, hostile vs quiet phases", fmt.Sprintf("≤ %.1f × quiet", HostileGoalRatio),
		fmt.Sprintf("%.1f ms vs %.1f ms: %.2f×", res.Hostile.P99, res.Quiet.P99, r.P99Ratio),
		res.Quiet.Count > 0 && res.Hostile.Count > 0 && res.Hostile.P99 <= HostileGoalRatio*res.Quiet.P99)
	var errs int64
	for _, n := range res.VictimErrors {
		errs += n
	}
	add("victims' errors", "0 (only 2xx: no 429, no 5xx)", fmt.Sprintf("%d %s", errs, formatCounts(res.VictimErrors)), errs == 0)
	add("hostile rate offered on schedule",
		fmt.Sprintf("≥ %.0f%% of %.0f/s, schedule lag p99 ≤ %.0f ms", HostileMinRate*100, r.Settings.HostileRate, HostileMaxLag),
		fmt.Sprintf("%.0f/s offered: %.0f/s sent, %d due while every connection waited on the gateway; lag p99 %.1f ms",
			res.HostileOffered, res.HostileRate, res.HostileSkipped, res.HostileLagP99),
		res.HostileOffered >= HostileMinRate*r.Settings.HostileRate && res.HostileLagP99 <= HostileMaxLag)
	got, met := stealGot(res.Phases)
	add("the machine ran every phase alike (hypervisor steal)",
		fmt.Sprintf("≤ %.0f%% of the CPUs' time stolen in each phase", HostileMaxSteal*100), got, met)
	r.Goals = g
}

// stealGot says how much CPU time the hypervisor took in the worst phase,
// and whether every phase stayed within HostileMaxSteal. A run that could
// not read it (not Linux) is not held against the target.
func stealGot(phases []PhaseResult) (string, bool) {
	worst, at := 0.0, 0
	for _, p := range phases {
		if p.StealErr != "" {
			return "unknown: " + p.StealErr, true
		}
		if p.Steal >= worst {
			worst, at = p.Steal, p.Index+1
		}
	}
	if len(phases) == 0 {
		return "no phase", true
	}
	return fmt.Sprintf("at most %.1f%% (phase %d)", worst*100, at), worst <= HostileMaxSteal
}

// formatCounts prints counts in key order: "(429: 3, 503: 1)".
func formatCounts(m map[string]int64) string {
	if len(m) == 0 {
		return ""
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s: %d", k, m[k])
	}
	return "(" + strings.Join(parts, ", ") + ")"
}

// IsHostileReport reports whether path (a results.json or its directory)
// is a hostile run's.
func IsHostileReport(path string) bool {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		path = filepath.Join(path, "results.json")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	var r struct {
		Kind string `json:"kind"`
	}
	return json.Unmarshal(b, &r) == nil && r.Kind == Hostile
}

// Write writes results.json and summary.md into dir.
func (r *HostileReport) Write(dir string) error { return writeRun(dir, r, r.Summary()) }

// Summary is the run as Markdown.
func (r *HostileReport) Summary() string {
	var b strings.Builder
	res, s := r.Result, r.Settings
	fmt.Fprintf(&b, "# %s → %s\n\n`%s`\n\n", r.Scenario, r.Target, r.Command)
	fmt.Fprintf(&b, "Machine: %d CPUs %s, %.0f GiB, %s, load average at the end %s.\n\n",
		r.Machine.CPUs, r.Machine.CPUModel, r.Machine.MemGiB, r.Machine.Go, r.Machine.LoadAvg)
	fmt.Fprintf(&b, "Victims: %d users (%d..) at %.0f requests/s, %.0f%% payments, reads %.0f%% balances. "+
		"Hostile: %.0f requests/s from %s over at most %d connections, %d accounts of its own, in phases %s, kinds %s. "+
		"%d phases of %s after a %s warm-up.\n\n",
		s.Users, s.FirstUser, s.Rate, s.PaymentRatio*100, s.BalanceRatio*100, s.HostileRate, orKernel(s.HostileSource),
		s.HostileConns, s.HostileAccounts, hostilePhaseList(s.Phases), strings.Join(s.HostileKinds, ", "), s.Phases, s.Phase, s.Warmup)
	b.WriteString("| goal | want | got | met |\n|---|---|---|---|\n")
	for _, g := range r.Goals {
		m := "yes"
		if !g.Met {
			m = "**no**"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", g.Name, g.Want, g.Got, m)
	}
	b.WriteString("\n| phase | hostile | victims | p50 ms | p99 ms | max ms | send lag p99 ms | victim errors | hostile sent/s | gateway CPU s (cores) | generator CPU s | stolen by the hypervisor |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, p := range res.Phases {
		h, rate := "quiet", "-"
		if p.Hostile {
			h, rate = "**hostile**", fmt.Sprintf("%.0f", p.HostileRate)
		}
		cpu := fmt.Sprintf("%.2f (%.2f)", p.TargetCPU, p.TargetCores)
		if p.CPUErr != "" {
			cpu = p.CPUErr
		}
		steal := fmt.Sprintf("%.1f%%", p.Steal*100)
		if p.StealErr != "" {
			steal = "unknown"
		}
		fmt.Fprintf(&b, "| %d | %s | %d | %.1f | %.1f | %.1f | %.1f | %d %s | %s | %s | %.2f | %s |\n", p.Index+1, h, p.Victims.Count,
			p.Victims.P50, p.Victims.P99, p.Victims.Max, p.SendLagP99, sumCounts(p.VictimErrors), formatCounts(p.VictimErrors), rate, cpu,
			p.GeneratorCPU, steal)
	}
	for _, row := range []struct {
		n string
		l Latency
	}{{"quiet, pooled", res.Quiet}, {"**hostile, pooled**", res.Hostile}} {
		fmt.Fprintf(&b, "| %s | | %d | %.1f | %.1f | %.1f | | | | | | |\n", row.n, row.l.Count, row.l.P50, row.l.P99, row.l.Max)
	}
	fmt.Fprintf(&b, "\nVictims: %d answered 2xx in the phases; errors over the whole run %d %s %s; send lag p99 %.1f ms.\n\n",
		res.VictimOK, sumCounts(res.VictimErrors), formatCounts(res.VictimErrors), res.VictimFirstError, res.SendLagP99)
	fmt.Fprintf(&b, "Hostile: %d sent (%.0f/s in its phases), %d skipped. Its answers by kind:\n\n", res.HostileSent,
		res.HostileRate, res.HostileSkipped)
	b.WriteString("| kind | answers |\n|---|---|\n")
	for _, k := range HostileKinds {
		fmt.Fprintf(&b, "| %s | %s |\n", k, formatCounts(res.HostileAnswers[k]))
	}
	if res.GeneratorCPUHostile > 0 {
		fmt.Fprintf(&b, "\nThe hostile client ran in a process of its own: %.2f CPU s.\n", res.GeneratorCPUHostile)
	}
	b.WriteString("\n| process | CPU s (whole run) |\n|---|---|\n")
	for _, c := range r.CPU {
		fmt.Fprintf(&b, "| %s | %.2f %s |\n", c.Name, c.Seconds, c.Err)
	}
	return b.String()
}

func sumCounts(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

func orKernel(source string) string {
	if source == "" {
		return "the kernel's choice of address"
	}
	return source
}

// hostilePhaseList names the hostile phases, 1-based: "2, 4, 6, 8".
func hostilePhaseList(phases int) string {
	var ps []string
	for p := range phases {
		if IsHostilePhase(p) {
			ps = append(ps, fmt.Sprint(p+1))
		}
	}
	return strings.Join(ps, ", ")
}
