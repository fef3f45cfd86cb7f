package reads

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/finsvc/finance/loadtest/internal/report"
)

// Report is a read run's results.json.
type Report struct {
	Kind     string              `json:"kind"` // "reads": tells it from a money run's results.json
	Scenario string              `json:"scenario"`
	Target   string              `json:"target"`
	URL      string              `json:"url"`
	Command  string              `json:"command"`
	Machine  report.Machine      `json:"machine"`
	Settings Settings            `json:"settings"`
	Result   *Result             `json:"result"`
	SSE      *SSEResult          `json:"sse,omitempty"`
	RSS      *RSS                `json:"target_rss,omitempty"`
	CPU      []report.ProcessCPU `json:"cpu"`
	DB       DBStats             `json:"database"`
	// Per read: the target's CPU (µs) and its database's work.
	CPUPerReadUS    float64 `json:"target_cpu_per_read_us,omitempty"`
	CommitsPerRead  float64 `json:"db_commits_per_read,omitempty"`
	StmtsPerRead    float64 `json:"db_statements_per_read,omitempty"`
	RowsPerRead     float64 `json:"db_rows_returned_per_read,omitempty"`
	OpenConnections int     `json:"open_connections"`
	// MachineSteal is the share of the machine's CPU time the hypervisor
	// gave to other guests during the run (hostcpu); nil: not measured.
	MachineSteal *float64      `json:"machine_steal_share,omitzero"`
	Baseline     string        `json:"baseline,omitempty"`
	Goals        []report.Goal `json:"goals"`
}

// Settings are the run's resolved settings.
type Settings struct {
	Population   int     `json:"population"`
	FirstUser    int64   `json:"first_user"`
	VUs          int     `json:"virtual_users,omitempty"`
	Think        string  `json:"think,omitempty"`
	Conns        int     `json:"conns,omitempty"`
	Duration     string  `json:"duration"`
	BalanceRatio float64 `json:"balance_ratio"`
	LongPolls    int     `json:"long_polls"`
	Streams      int     `json:"streams"`
	CreditRate   float64 `json:"credit_rate,omitempty"`
}

// SettingsOf returns cfg's settings for the report.
func SettingsOf(cfg Config) Settings {
	s := Settings{Population: cfg.Population, FirstUser: cfg.FirstUser, Duration: cfg.Duration.String(),
		BalanceRatio: cfg.BalanceRatio, LongPolls: cfg.LongPolls, Streams: cfg.Streams}
	switch cfg.Scenario {
	case ReadUsers:
		s.VUs, s.Think = cfg.VUs, cfg.Think.String()
	case ReadMax:
		s.Conns = cfg.Conns
	}
	return s
}

// RSSGoalBytes is issue 14's memory target with 10,000 open connections.
const RSSGoalBytes = 300 << 20

// Judge fills r's per-read figures and goals; base, when not nil, is an
// earlier run to compare with: the as-is service's (CPU per read, 3×
// throughput) or the same target's with another population (p99 within 25%).
func (r *Report) Judge(base *Report) {
	r.Kind = "reads"
	ok := float64(r.Result.OK)
	if ok > 0 {
		for _, c := range r.CPU {
			if c.Name == "gateway" || c.Name == "legacy" {
				r.CPUPerReadUS = round1(c.Seconds / ok * 1e6)
			}
		}
		r.CommitsPerRead = round2(float64(r.DB.XactCommit) / ok)
		r.RowsPerRead = round2(float64(r.DB.TupReturned) / ok)
		if r.DB.Statements > 0 {
			r.StmtsPerRead = round2(float64(r.DB.Statements) / ok)
		}
	}
	r.OpenConnections = r.Settings.VUs + r.Settings.Conns + r.Settings.LongPolls + r.Settings.Streams
	var g []report.Goal
	add := func(name, want, got string, met bool) {
		g = append(g, report.Goal{Name: name, Want: want, Got: got, Met: met})
	}
	if r.SSE != nil {
		add("answer→SSE event p99", "< 200 ms", fmt.Sprintf("%.1f ms (%d matched, %d executed without event)",
			r.SSE.AnswerSSE.P99, r.SSE.Matched, r.SSE.Missing), r.SSE.Matched > 0 && r.SSE.Missing == 0 && r.SSE.AnswerSSE.P99 < 200)
		r.Goals = g
		return
	}
	add("read p99", "< 50 ms", fmt.Sprintf("%.1f ms", r.Result.Reads.P99), r.Result.Reads.Count > 0 && r.Result.Reads.P99 < 50)
	// The memory target is for 10,000 open connections; below that the
	// RSS is shown in the summary, not judged.
	if r.RSS != nil && r.RSS.Err == "" && r.OpenConnections >= 10_000 {
		add("target RSS", fmt.Sprintf("≤ 300 MB with 10,000 open connections (here %d)", r.OpenConnections),
			fmt.Sprintf("%.1f MiB peak sampled", float64(r.RSS.PeakSampled)/(1<<20)),
			r.RSS.PeakSampled <= RSSGoalBytes)
	}
	if base == nil {
		r.Goals = g
		return
	}
	r.Baseline = fmt.Sprintf("%s→%s, %d users", base.Scenario, base.Target, base.Settings.Population)
	switch {
	case base.Target != r.Target && base.Scenario == r.Scenario && r.Scenario == ReadMax:
		ratio := r.Result.PerSecond / base.Result.PerSecond
		add("read throughput vs "+base.Target, "≥ 3× at equal p99",
			fmt.Sprintf("%.0f/s at p99 %.1f ms vs %.0f/s at p99 %.1f ms: %.2f×", r.Result.PerSecond, r.Result.Reads.P99,
				base.Result.PerSecond, base.Result.Reads.P99, ratio),
			ratio >= 3 && r.Result.Reads.P99 <= base.Result.Reads.P99*1.1)
		fallthrough
	case base.Target != r.Target:
		if base.CPUPerReadUS > 0 && r.CPUPerReadUS > 0 {
			add("target CPU per read vs "+base.Target, "≤ the as-is service's",
				fmt.Sprintf("%.0f µs vs %.0f µs", r.CPUPerReadUS, base.CPUPerReadUS), r.CPUPerReadUS <= base.CPUPerReadUS)
		}
	case base.Settings.Population != r.Settings.Population:
		d := math.Abs(r.Result.Reads.P99-base.Result.Reads.P99) / math.Min(r.Result.Reads.P99, base.Result.Reads.P99)
		add(fmt.Sprintf("p99 at %d vs %d users", r.Settings.Population, base.Settings.Population), "within 25%",
			fmt.Sprintf("%.1f ms vs %.1f ms (%.0f%%)", r.Result.Reads.P99, base.Result.Reads.P99, d*100), d <= 0.25)
	}
	r.Goals = g
}

func round1(v float64) float64 { return math.Round(v*10) / 10 }
func round2(v float64) float64 { return math.Round(v*100) / 100 }

// ReadReport reads a read run's results.json (or its directory).
func ReadReport(path string) (*Report, error) {
	var r Report
	path, err := readResults(path, &r)
	if err != nil {
		return nil, err
	}
	if r.Kind != "reads" || r.Result == nil {
		return nil, fmt.Errorf("%s is not a read run's results.json", path)
	}
	return &r, nil
}

// Write writes results.json and summary.md into dir.
func (r *Report) Write(dir string) error { return writeRun(dir, r, r.Summary()) }

// writeRun writes a run's report into dir: v as results.json (indented)
// and summary as summary.md. Every read scenario's report is written so.
func writeRun(dir string, v any, summary string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "summary.md"), []byte(summary), 0o644)
}

// Summary is the run as Markdown.
func (r *Report) Summary() string {
	var b strings.Builder
	res := r.Result
	fmt.Fprintf(&b, "# %s → %s\n\n`%s`\n\n", r.Scenario, r.Target, r.Command)
	fmt.Fprintf(&b, "Machine: %d CPUs %s, %.0f GiB, %s, load average at the end %s.\n\n",
		r.Machine.CPUs, r.Machine.CPUModel, r.Machine.MemGiB, r.Machine.Go, r.Machine.LoadAvg)
	if r.MachineSteal != nil {
		fmt.Fprintf(&b, "%s\n\n", report.StealSentence(*r.MachineSteal, nil))
	}
	s := r.Settings
	fmt.Fprintf(&b, "Users picked from %d seeded (%d..); ", s.Population, s.FirstUser)
	switch {
	case s.VUs > 0:
		fmt.Fprintf(&b, "%d virtual users thinking %s; ", s.VUs, s.Think)
	case s.Conns > 0:
		fmt.Fprintf(&b, "%d connections, closed model; ", s.Conns)
	}
	fmt.Fprintf(&b, "%s; balances %.0f%% of reads; %d long-polls, %d streams held.\n\n", s.Duration, s.BalanceRatio*100, s.LongPolls, s.Streams)
	if len(r.Goals) > 0 {
		b.WriteString("| goal | want | got | met |\n|---|---|---|---|\n")
		for _, g := range r.Goals {
			m := "yes"
			if !g.Met {
				m = "**no**"
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", g.Name, g.Want, g.Got, m)
		}
		b.WriteString("\n")
	}
	if r.SSE != nil {
		x := r.SSE
		fmt.Fprintf(&b, "Credits: %d sent, %d accepted, %d executed, %d succeeded events seen, %d matched.\n"+
			"Answer → SSE event: p50 %.1f ms, p99 %.1f ms, p99.9 %.1f ms, max %.1f ms.\n\n",
			x.Sent, x.Accepted, x.Executed, x.Seen, x.Matched, x.AnswerSSE.P50, x.AnswerSSE.P99, x.AnswerSSE.P999, x.AnswerSSE.Max)
	}
	if res.Reads.Count > 0 {
		b.WriteString("| reads | count | p50 ms | p99 ms | p99.9 ms | max ms |\n|---|---|---|---|---|---|\n")
		for _, row := range []struct {
			n string
			l Latency
		}{{"all", res.Reads}, {"feeds", res.Feeds}, {"balances", res.Balances}} {
			fmt.Fprintf(&b, "| %s | %d | %.1f | %.1f | %.1f | %.1f |\n", row.n, row.l.Count, row.l.P50, row.l.P99, row.l.P999, row.l.Max)
		}
		fmt.Fprintf(&b, "\n%.1f reads/s answered 2xx; errors %v; send lag p99 %.1f ms.\n\n", res.PerSecond, res.Errors, res.SendLagP99)
	}
	if s.LongPolls+s.Streams > 0 {
		fmt.Fprintf(&b, "Push at the end of the load: %d long-polls and %d streams open; %d long-poll answers, %d SSE events, %d errors %s.\n\n",
			res.LongPollsOpenAtEnd, res.StreamsOpenAtEnd, res.LongPollAnswers, res.SSEEvents, res.PushErrors, res.PushFirstError)
	}
	if r.RSS != nil {
		fmt.Fprintf(&b, "Target RSS (pid %d): peak sampled %.1f MiB, VmHWM %.1f MiB, at the end %.1f MiB %s\n\n", r.RSS.PID,
			float64(r.RSS.PeakSampled)/(1<<20), float64(r.RSS.HWM)/(1<<20), float64(r.RSS.End)/(1<<20), r.RSS.Err)
	}
	b.WriteString("| process | CPU s |\n|---|---|\n")
	for _, c := range r.CPU {
		fmt.Fprintf(&b, "| %s | %.2f %s |\n", c.Name, c.Seconds, c.Err)
	}
	fmt.Fprintf(&b, "\nPer 2xx read: target CPU %.0f µs; database (%s) %.2f commits, %.2f rows returned",
		r.CPUPerReadUS, r.DB.Source, r.CommitsPerRead, r.RowsPerRead)
	if r.StmtsPerRead > 0 {
		fmt.Fprintf(&b, ", %.2f statements", r.StmtsPerRead)
	}
	b.WriteString(" (the database's counters include the long-polls' and streams' reads)\n")
	return b.String()
}

// readResults decodes the results.json at path, or in the run directory
// path, into v, and returns the file's path.
func readResults(path string, v any) (string, error) {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		path = filepath.Join(path, "results.json")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return path, err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return path, fmt.Errorf("%s: %w", path, err)
	}
	return path, nil
}
