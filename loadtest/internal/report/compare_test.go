package report_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/finsvc/finance/loadtest/internal/check"
	"github.com/finsvc/finance/loadtest/internal/report"
	"github.com/finsvc/finance/loadtest/internal/target"
	"github.com/finsvc/finance/pkg/simclient"
)

func judged(kind target.Kind, cpu ...report.ProcessCPU) *report.Report {
	r := report.Judge(burst(40, true, 299, check.Report{}), kind, "http://x", simclient.Settings{}, "http://sim", "loadtest run", report.ThisMachine())
	r.CPU = cpu
	return r
}

// TestCPUPerPayment divides each process's CPU by the accepted payments
// (100 in burst), sums a name measured twice and leaves out an unread one.
func TestCPUPerPayment(t *testing.T) {
	t.Parallel()
	r := judged(target.Pipeline,
		report.ProcessCPU{Name: "gateway", Seconds: 2},
		report.ProcessCPU{Name: "postgres", Seconds: 3},
		report.ProcessCPU{Name: "postgres", Seconds: 1},
		report.ProcessCPU{Name: "dispatcher", Err: "connection refused"},
	)
	got, total := report.CPUPerPayment(r)
	want := []report.Part{{Name: "gateway", Value: 20}, {Name: "postgres", Value: 40}}
	if diff := cmp.Diff(want, got); diff != "" || total != 60 {
		t.Errorf("total %v, want 60; (-want +got):\n%s", total, diff)
	}
	if got, _ := report.CPUPerPayment(judged(target.Pipeline)); got != nil {
		t.Errorf("a run that measured no process: %v, want nil", got)
	}
}

func TestWriteComparison(t *testing.T) {
	t.Parallel()
	asIs := judged(target.Legacy, report.ProcessCPU{Name: "legacy", Seconds: 1}, report.ProcessCPU{Name: "postgres", Seconds: 1})
	pipeline := judged(target.Pipeline, report.ProcessCPU{Name: "gateway", Seconds: 2}, report.ProcessCPU{Name: "postgres", Seconds: 1})
	prefix := filepath.Join(t.TempDir(), "burst")
	files, err := report.WriteComparison([]*report.Report{asIs, pipeline}, prefix)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{prefix + report.CompareThroughput, prefix + report.CompareLatency, prefix + report.CompareCPU}
	if diff := cmp.Diff(want, files); diff != "" {
		t.Errorf("files (-want +got):\n%s", diff)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil || !bytes.HasPrefix(b, []byte("\x89PNG")) {
			t.Errorf("%s is not a PNG (err %v)", f, err)
		}
	}

	// No CPU measured on one side: no CPU plot, the others still drawn.
	prefix = filepath.Join(t.TempDir(), "burst")
	files, err = report.WriteComparison([]*report.Report{judged(target.Legacy), pipeline}, prefix)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want[:0:0], files[2:]); diff != "" || len(files) != 2 {
		t.Errorf("without CPU got %v, want the throughput and latency plots only", files)
	}
}

func TestWriteComparisonRefuses(t *testing.T) {
	t.Parallel()
	mixed := judged(target.Pipeline)
	mixed.Scenario = "mixed"
	for _, tc := range []struct {
		name string
		runs []*report.Report
		want string
	}{
		{"one run", []*report.Report{judged(target.Pipeline)}, "at least two runs"},
		{"two scenarios", []*report.Report{judged(target.Legacy), mixed}, "different scenarios (burst, mixed)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			_, err := report.WriteComparison(tc.runs, filepath.Join(dir, "x"))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err %v, want %q", err, tc.want)
			}
			if left, _ := os.ReadDir(dir); len(left) != 0 {
				t.Errorf("a refused comparison wrote %d files", len(left))
			}
		})
	}
}

func TestTargetLabel(t *testing.T) {
	t.Parallel()
	if got := report.TargetLabel(string(target.Legacy)); got != "as-is service" {
		t.Errorf("legacy: %q", got)
	}
	if got := report.TargetLabel(string(target.Pipeline)); got != "pipeline" {
		t.Errorf("pipeline: %q", got)
	}
}
