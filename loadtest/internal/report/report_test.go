package report_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/finsvc/finance/loadtest/internal/check"
	"github.com/finsvc/finance/loadtest/internal/loadgen"
	"github.com/finsvc/finance/loadtest/internal/report"
	"github.com/finsvc/finance/loadtest/internal/scenario"
	"github.com/finsvc/finance/loadtest/internal/target"
	"github.com/finsvc/finance/pkg/simclient"
)

func burst(p99 float64, drained bool, rate float64, c check.Report) *loadgen.Result {
	res := &loadgen.Result{
		Workload:      scenario.Workload{Scenario: "burst", Users: 100, Rate: 100, Duration: time.Second, Burst: true, Limit: 300},
		Writes:        loadgen.OpSummary{Sent: 100, Completed: 100, ByClass: map[string]int64{"ok": 100}, Latency: loadgen.Percentiles{Count: 100, P50: 5, P99: p99, Max: p99 + 1}},
		BucketSeconds: 0.1,
		Drain: loadgen.Drain{Applicable: true, Peak: 100, PeakAt: 1, PendingDrained: drained, PendingDrainedAt: 2,
			Drained: drained, DrainedAt: 2, ExecRate: rate, RateOfLimit: rate / 300},
		Check: c,
	}
	for i := range 30 {
		res.Samples = append(res.Samples, loadgen.Sample{T: float64(i), ProcExecuted: rate, ProcCalls: rate, Backlog: int64(max(100-10*i, 0))})
		res.Seconds = append(res.Seconds, loadgen.Second{T: float64(i) / 10, Writes: loadgen.SecondOp{Sent: 10, Done: 10, OK: 10, P50: 5, P99: p99}})
	}
	return res
}

func metOf(r *report.Report) map[string]bool {
	m := map[string]bool{}
	for _, g := range r.Goals {
		m[g.Name] = g.Met
	}
	return m
}

func TestJudge(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		res        *loadgen.Result
		wantPassed bool
		wantMet    map[string]bool
	}{
		{"burst meets every goal", burst(40, true, 299, check.Report{}), true,
			map[string]bool{"every payment answered 202": true, "p99 acceptance latency": true, "drain rate": true, "invariant checker": true}},
		{"slow and stuck", burst(400, false, 250, check.Report{Stuck: 3}), false,
			map[string]bool{"every payment answered 202": true, "p99 acceptance latency": false, "drain rate": false, "invariant checker": false}},
		{"checker error fails the run", func() *loadgen.Result {
			r := burst(40, true, 299, check.Report{})
			r.CheckErr = "database gone"
			return r
		}(), false,
			map[string]bool{"every payment answered 202": true, "p99 acceptance latency": true, "drain rate": true, "invariant checker": false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := report.Judge(tc.res, target.Pipeline, "http://gw", simclient.Settings{API: "proposed"}, "http://sim", "loadtest run", report.Machine{})
			if r.Passed != tc.wantPassed {
				t.Errorf("Passed = %v (%v), want %v", r.Passed, r.Failures, tc.wantPassed)
			}
			if diff := cmp.Diff(tc.wantMet, metOf(r)); diff != "" {
				t.Errorf("goals met (-want +got):\n%s", diff)
			}
		})
	}
}

func TestOutageGoals(t *testing.T) {
	t.Parallel()
	res := burst(40, true, 299, check.Report{})
	res.Workload.Burst = false
	res.Workload.Outage = &scenario.Outage{At: time.Second, Duration: time.Second}
	res.Outage = &loadgen.OutageWindow{Start: 1, End: 2}
	r := report.Judge(res, target.Pipeline, "", simclient.Settings{}, "", "", report.Machine{})
	if diff := cmp.Diff(map[string]bool{"acceptance never stops during the outage": true, "backlog drains after the outage": true,
		"invariant checker": true}, metOf(r)); diff != "" {
		t.Errorf("goals (-want +got):\n%s", diff)
	}
	res.Seconds[15].Writes.Failed = 1
	r = report.Judge(res, target.Pipeline, "", simclient.Settings{}, "", "", report.Machine{})
	if metOf(r)["acceptance never stops during the outage"] {
		t.Error("a refused payment during the outage still met the goal")
	}
}

func TestWrite(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r := report.Judge(burst(40, true, 299, check.Report{}), target.Pipeline, "http://gw", simclient.Settings{}, "http://sim", "loadtest run --scenario burst", report.ThisMachine())
	if err := report.Write(r, dir); err != nil {
		t.Fatal(err)
	}
	want := []string{report.PlotLatency, report.PlotThroughput, report.PlotProcessor, report.PlotBacklog, report.PlotDrain}
	if diff := cmp.Diff(want, r.Plots); diff != "" {
		t.Errorf("plots (-want +got):\n%s", diff)
	}
	md, err := os.ReadFile(filepath.Join(dir, "summary.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"**PASSED**", "![drain](drain.png)", "`loadtest run --scenario burst`", "## Drain"} {
		if !strings.Contains(string(md), s) {
			t.Errorf("summary lacks %q", s)
		}
	}
	back, err := report.Read(filepath.Join(dir, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(report.Table([]*report.Report{back}), "| burst | pipeline | 100 | 100 | 100 | 100 |") {
		t.Errorf("table: %s", report.Table([]*report.Report{back}))
	}
}

// TestCPUSection names where each CPU figure comes from, and sums them.
func TestCPUSection(t *testing.T) {
	t.Parallel()
	r := report.Judge(burst(40, true, 299, check.Report{}), target.Pipeline, "http://gw", simclient.Settings{}, "http://sim", "loadtest run", report.ThisMachine())
	r.CPU = []report.ProcessCPU{
		{Name: "gateway", URL: "http://gw/metrics", Seconds: 2},
		{Name: "postgres", URL: report.ProcPrefix + "postgres", Seconds: 3},
	}
	md := report.Markdown(r)
	for _, s := range []string{"for postgres, every process of that name on this machine", "| postgres | 3.00 | 30.00 |", "| **total** | 5.00 | 50.00 |"} {
		if !strings.Contains(md, s) {
			t.Errorf("CPU section lacks %q:\n%s", s, md)
		}
	}
	r.CPU = r.CPU[:1]
	if md := report.Markdown(r); !strings.Contains(md, "are not included: see `--local-cpu`") {
		t.Errorf("without --local-cpu the section does not say what is missing:\n%s", md)
	}
}

func TestPollGoals(t *testing.T) {
	t.Parallel()
	res := burst(40, true, 299, check.Report{})
	res.Workload.Scenario, res.Workload.Pollers = "burst-poll", 16
	res.Poll = &loadgen.PollStats{Pollers: 16, Followed: 100, SeenFinal: 100, Executed: 100, IdealDrain: 20, LastFinalAt: 22.9,
		DrainOfIdeal: 1.145, ServerVisible: loadgen.Percentiles{Count: 100, P99: 999}, ClientVisible: loadgen.Percentiles{Count: 100, P99: 1900}}
	const drain, visible = "every payment final (drain with clients polling)", "answer→visible p99 (server: updated_at − answer)"
	r := report.Judge(res, target.Pipeline, "", simclient.Settings{}, "", "", report.Machine{})
	if diff := cmp.Diff(map[string]bool{"every payment answered 202": true, drain: true, visible: true, "invariant checker": true},
		metOf(r)); diff != "" {
		t.Errorf("goals (-want +got):\n%s", diff)
	}
	res.Poll.LastFinalAt, res.Poll.ServerVisible.P99 = 23.5, 1000
	r = report.Judge(res, target.Pipeline, "", simclient.Settings{}, "", "", report.Machine{})
	if m := metOf(r); m[drain] || m[visible] {
		t.Errorf("a drain of 23.5 s against 1.15 × 20 s and a p99 of 1000 ms met the goals: %v", m)
	}
	if table := report.Table([]*report.Report{r}); !strings.Contains(table, "answer→visible p99 1000 ms (client 1900 ms)") {
		t.Errorf("the table row lacks the polling figures:\n%s", table)
	}
}

// TestStealSentence says how much CPU time the hypervisor took, and
// nothing for a run that did not measure it.
func TestStealSentence(t *testing.T) {
	t.Parallel()
	res := burst(40, true, 299, check.Report{})
	judge := func() string {
		return report.Markdown(report.Judge(res, target.Pipeline, "http://gw", simclient.Settings{}, "http://sim", "loadtest run", report.ThisMachine()))
	}
	if md := judge(); strings.Contains(md, "hypervisor") {
		t.Errorf("a run that did not measure steal speaks of it:\n%s", md)
	}
	none := 0.0
	res.MachineSteal = &none
	if md := judge(); !strings.Contains(md, "The hypervisor took none of the machine's CPU time during the run") {
		t.Errorf("no steal not said:\n%s", md)
	}
	some := 0.032
	res.MachineSteal = &some
	res.Samples[12].Steal = 0.25
	if md := judge(); !strings.Contains(md, "gave 3.2% of the machine's CPU time to other guests during the run (steal; 25% in its worst second, at 12 s)") {
		t.Errorf("steal not said:\n%s", md)
	}
}
