package reads

// Read runs side by side (`loadtest compare` of read runs): the design
// doc's read-path phase beside the as-is service.

import (
	"fmt"

	"github.com/finsvc/finance/loadtest/internal/report"
)

// The comparison plots of read runs, by the suffix of their file name.
const (
	CompareReads = "-reads.png"
	CompareCPU   = "-cpu.png"
)

// CPUPerRead is report.CPUPer in microseconds per 2xx read of r.
func CPUPerRead(r *Report) ([]report.Part, float64) {
	return report.CPUPer(r.CPU, r.Result.OK, 1e6)
}

// WriteComparison draws read runs (at least two, of one scenario) side by
// side: prefix+CompareReads, the reads per second of each with its p99,
// and, when every run measured its processes' CPU, prefix+CompareCPU, the
// CPU per read stacked by process. It returns the files written.
func WriteComparison(runs []*Report, prefix string) ([]string, error) {
	scenarios := make([]string, len(runs))
	for i, r := range runs {
		scenarios[i] = r.Scenario
	}
	if err := report.Comparable(scenarios); err != nil {
		return nil, err
	}
	throughput := make([]report.Bar, len(runs))
	cpu := make([]report.Bar, len(runs))
	for i, r := range runs {
		label := report.TargetLabel(r.Target)
		throughput[i] = report.Bar{Label: label,
			Top:   fmt.Sprintf("%.0f reads/s, p99 %.1f ms", r.Result.PerSecond, r.Result.Reads.P99),
			Parts: []report.Part{{Name: "reads/s", Value: r.Result.PerSecond}}}
		parts, total := CPUPerRead(r)
		if parts == nil {
			cpu = nil
		} else if cpu != nil {
			cpu[i] = report.Bar{Label: label, Top: fmt.Sprintf("%.0f µs", total), Parts: parts}
		}
	}
	var files []string
	for _, pl := range []struct {
		suffix, title, ylabel string
		bars                  []report.Bar
	}{
		{CompareReads, "Reads answered 2xx per second, with their p99", "reads per second", throughput},
		{CompareCPU, "CPU per read, every measured process", "microseconds of CPU per read", cpu},
	} {
		if pl.bars == nil {
			continue // a run measured no CPU
		}
		p, err := report.StackedBars(pl.title+" — "+runs[0].Scenario, pl.ylabel, pl.bars)
		if err != nil {
			return files, err
		}
		if err := report.SavePlot(p, prefix+pl.suffix); err != nil {
			return files, err
		}
		files = append(files, prefix+pl.suffix)
	}
	return files, nil
}
