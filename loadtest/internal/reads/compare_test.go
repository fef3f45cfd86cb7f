package reads_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/finsvc/finance/loadtest/internal/reads"
	"github.com/finsvc/finance/loadtest/internal/report"
)

func readRun(target string, ok int64, cpu ...report.ProcessCPU) *reads.Report {
	return &reads.Report{Kind: "reads", Scenario: reads.ReadMax, Target: target, CPU: cpu,
		Result: &reads.Result{OK: ok, PerSecond: float64(ok) / 20, Reads: reads.Latency{Count: ok, P50: 2, P99: 25}}}
}

// TestCPUPerRead divides each process's CPU by the 2xx reads and leaves
// out one that could not be read.
func TestCPUPerRead(t *testing.T) {
	t.Parallel()
	r := readRun("pipeline", 100_000,
		report.ProcessCPU{Name: "gateway", Seconds: 11},
		report.ProcessCPU{Name: "postgres", Seconds: 5},
		report.ProcessCPU{Name: "devkafka", Err: "not running"})
	parts, total := reads.CPUPerRead(r)
	want := []report.Part{{Name: "gateway", Value: 110}, {Name: "postgres", Value: 50}}
	if diff := cmp.Diff(want, parts); diff != "" || total != 160 {
		t.Errorf("total %v, want 160; (-want +got):\n%s", total, diff)
	}
	if parts, _ := reads.CPUPerRead(readRun("pipeline", 0, report.ProcessCPU{Name: "gateway", Seconds: 1})); parts != nil {
		t.Errorf("no read succeeded: %v, want nil", parts)
	}
}

func TestWriteComparison(t *testing.T) {
	t.Parallel()
	asIs := readRun("legacy", 103_000, report.ProcessCPU{Name: "legacy", Seconds: 12}, report.ProcessCPU{Name: "postgres", Seconds: 19})
	pipeline := readRun("pipeline", 180_000, report.ProcessCPU{Name: "gateway", Seconds: 20}, report.ProcessCPU{Name: "postgres", Seconds: 9})
	prefix := filepath.Join(t.TempDir(), "read-max")
	files, err := reads.WriteComparison([]*reads.Report{asIs, pipeline}, prefix)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{prefix + reads.CompareReads, prefix + reads.CompareCPU}, files); diff != "" {
		t.Errorf("files (-want +got):\n%s", diff)
	}
	for _, f := range files {
		if b, err := os.ReadFile(f); err != nil || !bytes.HasPrefix(b, []byte("\x89PNG")) {
			t.Errorf("%s is not a PNG (err %v)", f, err)
		}
	}
	// One side without CPU: the throughput plot only.
	files, err = reads.WriteComparison([]*reads.Report{readRun("legacy", 1000), pipeline}, filepath.Join(t.TempDir(), "x"))
	if err != nil || len(files) != 1 || !strings.HasSuffix(files[0], reads.CompareReads) {
		t.Errorf("without CPU: %v, %v; want the reads plot only", files, err)
	}
	// Runs of two scenarios are refused.
	other := readRun("pipeline", 1000)
	other.Scenario = reads.ReadUsers
	if _, err := reads.WriteComparison([]*reads.Report{asIs, other}, filepath.Join(t.TempDir(), "y")); err == nil || !strings.Contains(err.Error(), "different scenarios") {
		t.Errorf("two scenarios: err %v", err)
	}
}

func hostileRun(p99s ...float64) *reads.HostileReport {
	r := &reads.HostileReport{Kind: reads.Hostile, Scenario: reads.Hostile, Target: "pipeline", Result: &reads.HostileResult{}, P99Ratio: 1.05}
	for i, p := range p99s {
		r.Result.Phases = append(r.Result.Phases, reads.PhaseResult{Index: i, Hostile: i%2 == 1, Victims: reads.Latency{Count: 100, P99: p}})
	}
	return r
}

func TestWriteHostileComparison(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	prefix := filepath.Join(dir, "hostile")
	files, err := reads.WriteHostileComparison([]*reads.HostileReport{hostileRun(4, 5, 4, 5), hostileRun(5, 40, 6, 30)}, []string{"calm", "steal"}, prefix)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 1 || files[0] != prefix+reads.ComparePhases {
		t.Fatalf("files %v, want %s", files, prefix+reads.ComparePhases)
	}
	if b, err := os.ReadFile(files[0]); err != nil || !bytes.HasPrefix(b, []byte("\x89PNG")) {
		t.Errorf("%s is not a PNG (err %v)", files[0], err)
	}
	// One run alone is drawn too: its quiet and hostile phases are the comparison.
	if _, err := reads.WriteHostileComparison([]*reads.HostileReport{hostileRun(4, 5)}, []string{"one"}, filepath.Join(dir, "one")); err != nil {
		t.Errorf("one run: %v", err)
	}
	for _, tc := range []struct {
		name string
		runs []*reads.HostileReport
		want string
	}{
		{"phase counts differ", []*reads.HostileReport{hostileRun(4, 5, 4, 5), hostileRun(4, 5)}, "has 2 phases"},
		{"sides differ", []*reads.HostileReport{hostileRun(4, 5), func() *reads.HostileReport {
			r := hostileRun(4, 5)
			r.Result.Phases[0].Hostile = true
			return r
		}()}, "phase 1 is not of"},
	} {
		_, err := reads.WriteHostileComparison(tc.runs, []string{"a", "b"}, filepath.Join(dir, "x"))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestReadHostileReportRefusesOtherRuns(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "results.json")
	if err := os.WriteFile(path, []byte(`{"kind":"reads","scenario":"read-max","result":{}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := reads.ReadHostileReport(path); err == nil || !strings.Contains(err.Error(), "not a hostile run") {
		t.Errorf("a read run read as hostile: %v", err)
	}
}
