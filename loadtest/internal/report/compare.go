package report

// Side-by-side plots: two or more runs of one scenario on shared axes, as
// the design doc shows each phase beside the as-is service
// (`loadtest compare`).

import (
	"errors"
	"fmt"
	"image/color"
	"math"
	"slices"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"

	"github.com/finsvc/finance/loadtest/internal/target"
)

// The comparison plots, by the suffix of their file name.
const (
	CompareThroughput = "-throughput.png"
	CompareLatency    = "-latency.png"
	CompareCPU        = "-cpu.png"
)

// runColors tell the runs apart; the as-is service is always the first run
// given, in grey, when it is one of them.
var runColors = []color.Color{grey, blue, orange, green, purple, red}

// processColors tell a CPU bar's processes apart.
var processColors = []color.Color{
	blue, orange, green, red, purple, grey,
	color.RGBA{R: 140, G: 86, B: 75, A: 255},
	color.RGBA{R: 227, G: 119, B: 194, A: 255},
	color.RGBA{R: 188, G: 189, B: 34, A: 255},
	color.RGBA{R: 23, G: 190, B: 207, A: 255},
}

// TargetLabel names a run's target in a comparison, as the docs do.
func TargetLabel(t string) string {
	if t == string(target.Legacy) {
		return "as-is service"
	}
	return t
}

// Comparable says why runs of these scenarios, one per run, cannot be
// drawn side by side (fewer than two, or of different scenarios), or nil.
func Comparable(scenarios []string) error {
	if len(scenarios) < 2 {
		return errors.New("a comparison needs at least two runs")
	}
	for _, sc := range scenarios[1:] {
		if sc != scenarios[0] {
			return fmt.Errorf("the runs are of different scenarios (%s, %s): compare runs of one", scenarios[0], sc)
		}
	}
	return nil
}

// WriteComparison draws runs (at least two, of one scenario) on shared
// axes into prefix+CompareThroughput, prefix+CompareLatency and, when every
// run measured its processes' CPU, prefix+CompareCPU. It returns the files
// written.
func WriteComparison(runs []*Report, prefix string) ([]string, error) {
	scenarios := make([]string, len(runs))
	for i, r := range runs {
		scenarios[i] = r.Scenario
	}
	if err := Comparable(scenarios); err != nil {
		return nil, err
	}
	var files []string
	for _, f := range []struct {
		suffix string
		make   func([]*Report) (*plot.Plot, error)
	}{
		{CompareThroughput, compareThroughput},
		{CompareLatency, compareLatency},
		{CompareCPU, compareCPU},
	} {
		p, err := f.make(runs)
		if err != nil {
			return files, fmt.Errorf("plot %s: %w", f.suffix, err)
		}
		if p == nil {
			continue
		}
		name := prefix + f.suffix
		if err := SavePlot(p, name); err != nil {
			return files, err
		}
		files = append(files, name)
	}
	return files, nil
}

// SavePlot writes p to the PNG file name, at the size of every plot here.
func SavePlot(p *plot.Plot, name string) error {
	if err := p.Save(9*vg.Inch, 4*vg.Inch, name); err != nil {
		return fmt.Errorf("plot %s: %w", name, err)
	}
	return nil
}

// newTitledPlot is an empty plot with its title, its y axis's label, a
// grid, and the legend at the top right.
func newTitledPlot(title, ylabel string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.Y.Label.Text = ylabel
	p.Legend.Top = true
	p.Legend.Left = false
	p.Add(plotter.NewGrid())
	return p
}

func newComparePlot(runs []*Report, title, ylabel string) *plot.Plot {
	p := newTitledPlot(fmt.Sprintf("%s — %s", title, runs[0].Scenario), ylabel)
	p.X.Label.Text = "seconds since start"
	p.X.Tick.Marker = plainTicks{}
	return p
}

// plainTicks are gonum's default ticks labelled without trailing zeros
// ("25", not "25.00").
type plainTicks struct{}

func (plainTicks) Ticks(lo, hi float64) []plot.Tick {
	ticks := plot.DefaultTicks{}.Ticks(lo, hi)
	for i, t := range ticks {
		if t.Label != "" {
			ticks[i].Label = strconv.FormatFloat(t.Value, 'f', -1, 64)
		}
	}
	return ticks
}

// compareThroughput is each run's payments answered 2xx per second and
// the processor's executions per second.
func compareThroughput(runs []*Report) (*plot.Plot, error) {
	p := newComparePlot(runs, "Payments answered 2xx (solid) and executed by the processor (dashed), each second", "per second")
	hi := 0.0
	var ss []series
	for i, r := range runs {
		// Whole seconds: a tenth's rate swings with the batches.
		var ok, executed plotter.XYs
		for _, s := range r.Result.Seconds {
			sec := math.Floor(s.T + 1e-9)
			if n := len(ok); n == 0 || ok[n-1].X != sec+0.5 {
				ok = append(ok, plotter.XY{X: sec + 0.5})
			}
			ok[len(ok)-1].Y += float64(s.Writes.OK)
		}
		for _, xy := range ok {
			hi = math.Max(hi, xy.Y)
		}
		for _, s := range r.Result.Samples {
			if !s.NoProcessor {
				executed = append(executed, plotter.XY{X: s.T, Y: s.ProcExecuted})
				hi = math.Max(hi, s.ProcExecuted)
			}
		}
		c := runColors[i%len(runColors)]
		ss = append(ss,
			series{name: TargetLabel(r.Target) + ": answered 2xx", color: c, points: true, xys: ok},
			series{name: TargetLabel(r.Target) + ": executed", color: c, dashed: true, xys: executed})
	}
	if hi == 0 {
		return nil, nil
	}
	if err := addSeries(p, ss...); err != nil {
		return nil, err
	}
	p.Y.Min, p.Y.Max = 0, hi*1.45
	return p, nil
}

// compareLatency is each run's payment p99 by the second its requests
// were answered, from their intended send time.
func compareLatency(runs []*Report) (*plot.Plot, error) {
	p := newComparePlot(runs, "Payment p99 from intended send time, by second answered", "milliseconds (log)")
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = ticks125{}
	lo, hi := math.Inf(1), 0.0
	var ss []series
	for i, r := range runs {
		var xys plotter.XYs
		for _, s := range r.Result.Seconds {
			if s.Writes.Done > 0 && s.Writes.P99 > 0 {
				xys = append(xys, plotter.XY{X: s.T + r.Result.BucketSeconds/2, Y: s.Writes.P99})
				lo, hi = math.Min(lo, s.Writes.P99), math.Max(hi, s.Writes.P99)
			}
		}
		ss = append(ss, series{name: TargetLabel(r.Target) + fmt.Sprintf(" (whole run p99 %.1f ms)", r.Result.Writes.Latency.P99),
			color: runColors[i%len(runColors)], points: true, xys: xys})
	}
	if hi == 0 {
		return nil, nil
	}
	if err := addSeries(p, ss...); err != nil {
		return nil, err
	}
	p.Y.Min, p.Y.Max = lo/1.5, hi*4
	return p, nil
}

// CPUPer is the CPU each measured process used per unit of work, in
// cpu's order (a process measured twice is summed, one that could not be
// read is left out), and their total: its seconds over count, times scale
// (1e3 for milliseconds, 1e6 for microseconds). Nil when no process was
// measured or count is 0.
func CPUPer(cpu []ProcessCPU, count int64, scale float64) ([]Part, float64) {
	if len(cpu) == 0 || count == 0 {
		return nil, 0
	}
	var out []Part
	total := 0.0
	for _, c := range cpu {
		if c.Err != "" {
			continue
		}
		v := c.Seconds * scale / float64(count)
		total += v
		if i := slices.IndexFunc(out, func(p Part) bool { return p.Name == c.Name }); i >= 0 {
			out[i].Value += v
			continue
		}
		out = append(out, Part{Name: c.Name, Value: v})
	}
	return out, total
}

// CPUPerPayment is CPUPer in milliseconds per accepted payment of r.
func CPUPerPayment(r *Report) ([]Part, float64) {
	return CPUPer(r.CPU, r.Result.Writes.ByClass[string(target.OK)], 1e3)
}

// compareCPU is one bar per run: the CPU its processes used per accepted
// payment, stacked by process. Nil when a run measured none.
func compareCPU(runs []*Report) (*plot.Plot, error) {
	bars := make([]Bar, len(runs))
	for i, r := range runs {
		parts, total := CPUPerPayment(r)
		if parts == nil {
			return nil, nil
		}
		bars[i] = Bar{Label: TargetLabel(r.Target), Top: fmt.Sprintf("%.2f ms", total), Parts: parts}
	}
	return StackedBars("CPU per accepted payment, every measured process — "+runs[0].Scenario,
		"milliseconds of CPU per payment", bars)
}

// Bar is one bar of StackedBars: its parts from the bottom up, and the
// text written above it.
type Bar struct {
	Label string
	Top   string
	Parts []Part
}

// Part is one layer of a Bar.
type Part struct {
	Name  string
	Value float64
}

// StackedBars draws one bar per Bar, stacked by part, each part name in
// one colour across the bars, with the legend naming the parts when there
// are more than one.
func StackedBars(title, ylabel string, bars []Bar) (*plot.Plot, error) {
	var names []string // every part of any bar, in order of first appearance
	hi := 0.0
	for _, b := range bars {
		total := 0.0
		for _, p := range b.Parts {
			total += p.Value
			if !slices.Contains(names, p.Name) {
				names = append(names, p.Name)
			}
		}
		hi = math.Max(hi, total)
	}
	if hi == 0 {
		return nil, errors.New("nothing to draw: every bar is empty")
	}
	p := newTitledPlot(title, ylabel)
	var below *plotter.BarChart
	for k, name := range names {
		values := make(plotter.Values, len(bars))
		for i, b := range bars {
			for _, part := range b.Parts {
				if part.Name == name {
					values[i] += part.Value
				}
			}
		}
		bc, err := plotter.NewBarChart(values, vg.Points(60))
		if err != nil {
			return nil, err
		}
		bc.Color = processColors[k%len(processColors)]
		bc.LineStyle.Width = 0
		if below != nil {
			bc.StackOn(below)
		}
		p.Add(bc)
		if len(names) > 1 {
			p.Legend.Add(name, bc)
		}
		below = bc
	}
	var tops plotter.XYLabels
	labels := make([]string, len(bars))
	for i, b := range bars {
		total := 0.0
		for _, part := range b.Parts {
			total += part.Value
		}
		tops.XYs = append(tops.XYs, plotter.XY{X: float64(i), Y: total + hi*0.03}) // just above the bar
		tops.Labels = append(tops.Labels, b.Top)
		labels[i] = b.Label
	}
	l, err := plotter.NewLabels(tops)
	if err != nil {
		return nil, err
	}
	for i := range l.TextStyle {
		l.TextStyle[i].XAlign = -0.5 // centred over the bar
	}
	p.Add(l)
	p.NominalX(labels...)
	p.Y.Min, p.Y.Max = 0, hi*1.25
	p.X.Min, p.X.Max = -0.5, float64(len(bars))+1.5 // room on the right for the legend
	return p, nil
}

// Line is one series of LinePlot: its values at x = 0, 1, ...
type Line struct {
	Name string
	Y    []float64
}

// LinePlot draws lines, each with its points, over nominal x positions
// named by xticks (x = 0 for the first), starting the y axis at 0.
func LinePlot(title, ylabel string, xticks []string, lines []Line) (*plot.Plot, error) {
	p := newTitledPlot(title, ylabel)
	hi := 0.0
	ss := make([]series, len(lines))
	for i, l := range lines {
		xys := make(plotter.XYs, len(l.Y))
		for x, y := range l.Y {
			xys[x] = plotter.XY{X: float64(x), Y: y}
			hi = math.Max(hi, y)
		}
		ss[i] = series{name: l.Name, color: runColors[(i+1)%len(runColors)], points: true, xys: xys}
	}
	if hi == 0 {
		return nil, errors.New("nothing to draw: every value is 0")
	}
	if err := addSeries(p, ss...); err != nil {
		return nil, err
	}
	p.NominalX(xticks...)
	p.Y.Min, p.Y.Max = 0, hi*1.45 // room above the data for the legend
	return p, nil
}
