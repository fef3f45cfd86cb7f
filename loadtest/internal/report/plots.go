package report

import (
	"fmt"
	"image/color"
	"math"
	"path/filepath"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"

	"github.com/finsvc/finance/loadtest/internal/loadgen"
)

// The plots a report may have, by file name.
const (
	PlotLatency    = "latency.png"
	PlotThroughput = "throughput.png"
	PlotProcessor  = "processor.png"
	PlotBacklog    = "backlog.png"
	PlotDrain      = "drain.png"
)

var (
	blue   = color.RGBA{R: 31, G: 119, B: 180, A: 255}
	orange = color.RGBA{R: 255, G: 127, B: 14, A: 255}
	green  = color.RGBA{R: 44, G: 160, B: 44, A: 255}
	red    = color.RGBA{R: 214, G: 39, B: 40, A: 255}
	purple = color.RGBA{R: 148, G: 103, B: 189, A: 255}
	grey   = color.RGBA{R: 127, G: 127, B: 127, A: 255}
)

type series struct {
	name   string
	xys    plotter.XYs
	color  color.Color
	dashed bool
	points bool // also mark each point: short runs have few
}

// WritePlots draws the report's plots into dir and returns their file names.
func WritePlots(r *Report, dir string) ([]string, error) {
	var files []string
	add := func(name string, p *plot.Plot) error {
		if p == nil {
			return nil
		}
		if err := SavePlot(p, filepath.Join(dir, name)); err != nil {
			return err
		}
		files = append(files, name)
		return nil
	}
	for _, f := range []struct {
		name string
		make func(*Report) (*plot.Plot, error)
	}{
		{PlotLatency, latencyPlot},
		{PlotThroughput, throughputPlot},
		{PlotProcessor, processorPlot},
		{PlotBacklog, backlogPlot},
		{PlotDrain, drainPlot},
	} {
		p, err := f.make(r)
		if err != nil {
			return files, fmt.Errorf("plot %s: %w", f.name, err)
		}
		if err := add(f.name, p); err != nil {
			return files, err
		}
	}
	return files, nil
}

func newPlot(r *Report, title, ylabel string) *plot.Plot {
	p := newTitledPlot(fmt.Sprintf("%s — %s → %s", title, r.Scenario, r.Target), ylabel)
	p.X.Label.Text = "seconds since start"
	return p
}

func addSeries(p *plot.Plot, ss ...series) error {
	for _, s := range ss {
		if len(s.xys) == 0 {
			continue
		}
		l, err := plotter.NewLine(s.xys)
		if err != nil {
			return err
		}
		l.Color = s.color
		l.Width = vg.Points(1.5)
		if s.dashed {
			l.Dashes = []vg.Length{vg.Points(5), vg.Points(3)}
		}
		p.Add(l)
		if s.points {
			sc, err := plotter.NewScatter(s.xys)
			if err != nil {
				return err
			}
			sc.Color = s.color
			sc.Radius = vg.Points(2)
			p.Add(sc)
			p.Legend.Add(s.name, l, sc)
		} else {
			p.Legend.Add(s.name, l)
		}
	}
	return nil
}

// outageMarks draws the outage window as two vertical lines from lo to hi.
func outageMarks(p *plot.Plot, r *Report, lo, hi float64) error {
	o := r.Result.Outage
	if o == nil || o.End <= o.Start {
		return nil
	}
	for i, x := range []float64{o.Start, o.End} {
		l, err := plotter.NewLine(plotter.XYs{{X: x, Y: lo}, {X: x, Y: hi}})
		if err != nil {
			return err
		}
		l.Color = grey
		l.Dashes = []vg.Length{vg.Points(2), vg.Points(2)}
		p.Add(l)
		if i == 0 {
			p.Legend.Add("processor outage", l)
		}
	}
	return nil
}

func latencyPlot(r *Report) (*plot.Plot, error) {
	p := newPlot(r, "Latency from intended send time, by second answered", "milliseconds (log)")
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = ticks125{}
	pick := func(get func(loadgen.Second) (float64, int64)) plotter.XYs {
		var xys plotter.XYs
		for _, s := range r.Result.Seconds {
			if v, n := get(s); n > 0 && v > 0 {
				xys = append(xys, plotter.XY{X: s.T + r.Result.BucketSeconds/2, Y: v})
			}
		}
		return xys
	}
	ss := []series{
		{name: "payments p50", color: blue, points: true, xys: pick(func(s loadgen.Second) (float64, int64) { return s.Writes.P50, s.Writes.Done })},
		{name: "payments p99", color: blue, points: true, dashed: true, xys: pick(func(s loadgen.Second) (float64, int64) { return s.Writes.P99, s.Writes.Done })},
		{name: "feeds p50", color: orange, points: true, xys: pick(func(s loadgen.Second) (float64, int64) { return s.Reads.P50, s.Reads.Done })},
		{name: "feeds p99", color: orange, points: true, dashed: true, xys: pick(func(s loadgen.Second) (float64, int64) { return s.Reads.P99, s.Reads.Done })},
	}
	lo, hi := math.Inf(1), 0.0
	for _, s := range ss {
		for _, xy := range s.xys {
			lo, hi = math.Min(lo, xy.Y), math.Max(hi, xy.Y)
		}
	}
	if hi == 0 {
		return nil, nil
	}
	if err := addSeries(p, ss...); err != nil {
		return nil, err
	}
	// Room above the data for the legend.
	p.Y.Min, p.Y.Max = lo/1.5, hi*4
	return p, outageMarks(p, r, lo, hi)
}

// ticks125 labels a log axis at 1, 2 and 5 times the powers of ten.
type ticks125 struct{}

func (ticks125) Ticks(lo, hi float64) []plot.Tick {
	var t []plot.Tick
	for e := math.Floor(math.Log10(lo)); e <= math.Ceil(math.Log10(hi)); e++ {
		for _, m := range []float64{1, 2, 5} {
			v := m * math.Pow(10, e)
			if v >= lo && v <= hi {
				t = append(t, plot.Tick{Value: v, Label: strconv.FormatFloat(v, 'g', -1, 64)})
			}
		}
	}
	return t
}

func throughputPlot(r *Report) (*plot.Plot, error) {
	p := newPlot(r, "Throughput", "requests per second")
	var sent, wok, rok plotter.XYs
	hi := 0.0
	w := r.Result.BucketSeconds
	if w <= 0 {
		w = 1
	}
	for _, s := range r.Result.Seconds {
		x := s.T + w/2
		sent = append(sent, plotter.XY{X: x, Y: float64(s.Writes.Sent+s.Reads.Sent) / w})
		wok = append(wok, plotter.XY{X: x, Y: float64(s.Writes.OK) / w})
		rok = append(rok, plotter.XY{X: x, Y: float64(s.Reads.OK) / w})
		hi = math.Max(hi, float64(max(s.Writes.Sent+s.Reads.Sent, s.Writes.OK, s.Reads.OK))/w)
	}
	ss := []series{
		{name: "sent (scheduled arrivals)", color: grey, points: true, xys: sent},
		{name: "payments answered 2xx", color: blue, points: true, xys: wok},
	}
	if r.Result.Reads.Sent > 0 {
		ss = append(ss, series{name: "feeds answered 2xx", color: orange, points: true, xys: rok})
	}
	if err := addSeries(p, ss...); err != nil {
		return nil, err
	}
	p.Y.Min, p.Y.Max = 0, hi*1.35
	return p, outageMarks(p, r, 0, hi)
}

func processorPlot(r *Report) (*plot.Plot, error) {
	p := newPlot(r, "Processor calls against its limit", "per second")
	var calls, execd, refused plotter.XYs
	hi := r.Result.Workload.Limit
	for _, s := range r.Result.Samples {
		if s.NoProcessor {
			continue
		}
		calls = append(calls, plotter.XY{X: s.T, Y: s.ProcCalls})
		execd = append(execd, plotter.XY{X: s.T, Y: s.ProcExecuted})
		refused = append(refused, plotter.XY{X: s.T, Y: s.ProcRateLimited + s.ProcOutage})
		hi = math.Max(hi, s.ProcCalls)
	}
	var limit plotter.XYs
	if n := len(r.Result.Samples); n > 0 && r.Result.Workload.Limit > 0 {
		limit = plotter.XYs{{X: 0, Y: r.Result.Workload.Limit}, {X: r.Result.Samples[n-1].T, Y: r.Result.Workload.Limit}}
	}
	if err := addSeries(p,
		series{name: "calls", color: grey, xys: calls},
		series{name: "executed", color: green, xys: execd},
		series{name: "refused (rate limit, outage)", color: red, xys: refused},
		series{name: fmt.Sprintf("limit L = %.0f/s", r.Result.Workload.Limit), color: purple, dashed: true, xys: limit},
	); err != nil {
		return nil, err
	}
	p.Y.Min, p.Y.Max = 0, hi*1.35
	return p, outageMarks(p, r, 0, hi)
}

func backlogPlot(r *Report) (*plot.Plot, error) {
	label := "payments accepted, not yet final"
	if r.Target == "legacy" {
		label = "payments in flight (the as-is service has no queue)"
	}
	p := newPlot(r, "Backlog", "payments")
	var b, u plotter.XYs
	hi := 1.0
	for _, s := range r.Result.Samples {
		if s.NoBacklog {
			continue
		}
		b = append(b, plotter.XY{X: s.T, Y: float64(s.Backlog)})
		u = append(u, plotter.XY{X: s.T, Y: float64(s.Unknown)})
		hi = math.Max(hi, float64(s.Backlog+s.Unknown))
	}
	ss := []series{{name: label, color: blue, xys: b}}
	if hi > 0 && anyPositive(u) {
		ss = append(ss, series{name: "unknown (awaiting resolution)", color: red, xys: u})
	}
	if err := addSeries(p, ss...); err != nil {
		return nil, err
	}
	p.Y.Min, p.Y.Max = 0, hi*1.35
	return p, outageMarks(p, r, 0, hi)
}

// drainPlot is the backlog from its peak against the ideal drain at L.
func drainPlot(r *Report) (*plot.Plot, error) {
	d := r.Result.Drain
	if !d.Applicable || d.Peak == 0 || r.Result.Workload.Limit <= 0 {
		return nil, nil
	}
	p := newPlot(r, "Drain after the peak", "payments not yet final")
	var b plotter.XYs
	for _, s := range r.Result.Samples {
		if s.T >= d.PeakAt && !s.NoBacklog {
			b = append(b, plotter.XY{X: s.T - d.PeakAt, Y: float64(s.Backlog + s.Unknown)})
		}
	}
	ideal := idealDrain(r, d)
	if err := addSeries(p,
		series{name: "backlog", color: blue, xys: b},
		series{name: fmt.Sprintf("ideal: the processor at L = %.0f/s, less what still arrives", r.Result.Workload.Limit), color: purple, dashed: true, xys: ideal},
	); err != nil {
		return nil, err
	}
	p.X.Label.Text = "seconds since the peak"
	p.Y.Min, p.Y.Max = 0, float64(d.Peak)*1.35
	return p, nil
}

// idealDrain is the backlog from its peak if the processor worked it off
// at exactly L while payments kept arriving at the workload's write rate
// until the load ended.
func idealDrain(r *Report, d loadgen.Drain) plotter.XYs {
	w := r.Result.Workload
	limit := w.Limit
	writeRate := w.Rate * (1 - w.ReadRatio)
	loadLeft := max(w.Duration.Seconds()-d.PeakAt, 0)
	xys := plotter.XYs{{X: 0, Y: float64(d.Peak)}}
	b := float64(d.Peak)
	if net := limit - writeRate; loadLeft > 0 && net > 0 {
		if t := b / net; t <= loadLeft {
			return append(xys, plotter.XY{X: t, Y: 0})
		}
		b -= net * loadLeft
		xys = append(xys, plotter.XY{X: loadLeft, Y: b})
	} else if loadLeft > 0 {
		return xys // the backlog cannot shrink while the load goes on
	}
	return append(xys, plotter.XY{X: loadLeft + b/limit, Y: 0})
}

func anyPositive(xys plotter.XYs) bool {
	for _, xy := range xys {
		if xy.Y > 0 {
			return true
		}
	}
	return false
}
