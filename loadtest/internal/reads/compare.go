package reads

// Read runs side by side (`loadtest compare` of read runs): the design
// doc's read-path phase beside the as-is service.

import (
	"errors"
	"fmt"

	"github.com/finsvc/finance/loadtest/internal/report"
	"github.com/finsvc/finance/loadtest/internal/target"
)

// The comparison plots of read runs, by the suffix of their file name.
const (
	CompareReads = "-reads.png"
	CompareCPU   = "-cpu.png"
)

// runLabel names a run in a comparison as the docs do.
func runLabel(r *Report) string {
	if r.Target == string(target.Legacy) {
		return "as-is service"
	}
	return r.Target
}

// CPUPerRead is the CPU each measured process of r used per 2xx read, in
// microseconds, in r.CPU's order (one that could not be read is left out),
// and their total. Nil when the run measured none or no read succeeded.
func CPUPerRead(r *Report) ([]report.Part, float64) {
	if len(r.CPU) == 0 || r.Result.OK == 0 {
		return nil, 0
	}
	var parts []report.Part
	total := 0.0
	for _, c := range r.CPU {
		if c.Err != "" {
			continue
		}
		us := c.Seconds * 1e6 / float64(r.Result.OK)
		parts = append(parts, report.Part{Name: c.Name, Value: us})
		total += us
	}
	return parts, total
}

// WriteComparison draws read runs (at least two, of one scenario) side by
// side: prefix+CompareReads, the reads per second of each with its p99,
// and, when every run measured its processes' CPU, prefix+CompareCPU, the
// CPU per read stacked by process. It returns the files written.
func WriteComparison(runs []*Report, prefix string) ([]string, error) {
	if len(runs) < 2 {
		return nil, errors.New("a comparison needs at least two runs")
	}
	for _, r := range runs[1:] {
		if r.Scenario != runs[0].Scenario {
			return nil, fmt.Errorf("the runs are of different scenarios (%s, %s): compare runs of one", runs[0].Scenario, r.Scenario)
		}
	}
	throughput := make([]report.Bar, len(runs))
	cpu := make([]report.Bar, len(runs))
	for i, r := range runs {
		throughput[i] = report.Bar{Label: runLabel(r),
			Top:   fmt.Sprintf("%.0f reads/s, p99 %.1f ms", r.Result.PerSecond, r.Result.Reads.P99),
			Parts: []report.Part{{Name: "reads/s", Value: r.Result.PerSecond}}}
		parts, total := CPUPerRead(r)
		if parts == nil {
			cpu = nil
		} else if cpu != nil {
			cpu[i] = report.Bar{Label: runLabel(r), Top: fmt.Sprintf("%.0f µs", total), Parts: parts}
		}
	}
	var files []string
	p, err := report.StackedBars("Reads answered 2xx per second, with their p99 — "+runs[0].Scenario, "reads per second", throughput)
	if err != nil {
		return nil, err
	}
	if err := report.SavePlot(p, prefix+CompareReads); err != nil {
		return nil, err
	}
	files = append(files, prefix+CompareReads)
	if cpu != nil {
		p, err := report.StackedBars("CPU per read, every measured process — "+runs[0].Scenario, "microseconds of CPU per read", cpu)
		if err != nil {
			return files, err
		}
		if err := report.SavePlot(p, prefix+CompareCPU); err != nil {
			return files, err
		}
		files = append(files, prefix+CompareCPU)
	}
	return files, nil
}
