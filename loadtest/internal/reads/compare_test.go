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
