package console

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// DefaultStatsTTL is how long the overview's numbers are reused: however
// many operators poll, the database answers one query per TTL.
const DefaultStatsTTL = 2 * time.Second

// Window is the span the rates are measured over.
const Window = 10 * time.Second

// maxWindowRows bounds the transitions the rates query reads: the newest
// ones by id (the primary key), so the query never scans the table. At
// three transitions per payment it covers about 1,600 payments/s over
// Window; above that the rates show the cap (and say so).
const maxWindowRows = 50_000

// historyLen is how many samples the chart keeps: 5 minutes at 2 s.
const historyLen = 150

// statsSQL reads, in one round trip, the transitions of the last window
// (among the newest maxWindowRows by id) and the open payments (through the
// partial index payments_open_idx).
const statsSQL = `
WITH recent AS (
	SELECT to_status FROM payment_transitions
	WHERE id > (SELECT coalesce(max(id), 0) FROM payment_transitions) - $1
	  AND created_at >= now() - $2 * interval '1 millisecond'
)
SELECT count(*) FILTER (WHERE to_status = 'accepted'),
       count(*) FILTER (WHERE to_status = 'succeeded'),
       count(*) FILTER (WHERE to_status = 'failed'),
       count(*),
       (SELECT count(*) FROM payments WHERE status IN ('accepted', 'processing')),
       (SELECT count(*) FROM payments WHERE status = 'unknown')
FROM recent`

// Sample is the pipeline's state at one moment.
type Sample struct {
	At time.Time
	// Accepted, Settled (succeeded) and Failed per second over Window.
	Accepted, Settled, Failed float64
	// Capped: the window held more transitions than the query reads, so
	// the rates are lower bounds.
	Capped bool
	// Backlog is the payments accepted or processing; Unknown the
	// payments whose outcome is unknown.
	Backlog, Unknown int64
}

// Overview is the overview page's data.
type Overview struct {
	Sample
	// Limit is L; 0 when unknown.
	Limit float64
	// Utilization is (settled + failed) per second / L, in percent.
	Utilization float64
	// Drain is the backlog / L: how long the backlog takes at L.
	Drain time.Duration
	// Chart is the last minutes, drawn.
	Chart Chart
	// Err is why the numbers could not be read; the page shows the last ones.
	Err string
}

// stats reads the overview's numbers at most once per ttl and keeps the
// samples for the chart.
type stats struct {
	pool  *pgxpool.Pool
	limit float64
	ttl   time.Duration

	mu      sync.Mutex
	last    time.Time
	lastErr error
	history []Sample
}

func newStats(pool *pgxpool.Pool, limit float64, ttl time.Duration) *stats {
	return &stats{pool: pool, limit: limit, ttl: ttl}
}

// get returns the overview, from the cache when it is younger than ttl.
// Concurrent callers wait for the one refresh.
func (s *stats) get(ctx context.Context) Overview {
	s.mu.Lock()
	defer s.mu.Unlock()
	if time.Since(s.last) >= s.ttl {
		s.last = time.Now()
		smp, err := s.read(ctx)
		s.lastErr = err
		if err == nil {
			s.history = append(s.history, smp)
			if len(s.history) > historyLen {
				s.history = s.history[len(s.history)-historyLen:]
			}
		}
	}
	o := Overview{Limit: s.limit}
	if n := len(s.history); n > 0 {
		o.Sample = s.history[n-1]
	}
	if s.lastErr != nil {
		o.Err = s.lastErr.Error()
	}
	if s.limit > 0 {
		o.Utilization = 100 * (o.Settled + o.Failed) / s.limit
		o.Drain = time.Duration(float64(o.Backlog) / s.limit * float64(time.Second)).Round(time.Second)
	}
	o.Chart = drawChart(s.history, o.At)
	return o
}

func (s *stats) read(ctx context.Context) (Sample, error) {
	var accepted, settled, failed, all int64
	smp := Sample{At: time.Now()}
	err := s.pool.QueryRow(ctx, statsSQL, maxWindowRows, Window.Milliseconds()).
		Scan(&accepted, &settled, &failed, &all, &smp.Backlog, &smp.Unknown)
	if err != nil {
		return Sample{}, fmt.Errorf("read the overview's counts: %w", err)
	}
	sec := Window.Seconds()
	smp.Accepted, smp.Settled, smp.Failed = float64(accepted)/sec, float64(settled)/sec, float64(failed)/sec
	smp.Capped = all >= maxWindowRows
	return smp, nil
}

// Chart is an inline SVG line chart of the rates: one polyline per series.
type Chart struct {
	Width, Height          int
	Accepted, Settled, Max string // Max: the y axis' top, labelled
	Failed                 string
	Span                   string // what the x axis covers
	Empty                  bool
}

// chartSpan is the x axis: the last five minutes.
const chartSpan = 5 * time.Minute

// drawChart draws samples (oldest first) ending at now into a Chart.
func drawChart(samples []Sample, now time.Time) Chart {
	c := Chart{Width: 600, Height: 120, Span: "last 5 minutes"}
	if len(samples) < 2 {
		c.Empty = true
		return c
	}
	top := 1.0
	for _, s := range samples {
		top = max(top, s.Accepted, s.Settled, s.Failed)
	}
	c.Max = fmt.Sprintf("%.0f/s", top)
	line := func(v func(Sample) float64) string {
		var b strings.Builder
		for _, s := range samples {
			age := now.Sub(s.At)
			if age > chartSpan {
				continue
			}
			x := float64(c.Width) * (1 - age.Seconds()/chartSpan.Seconds())
			y := float64(c.Height) * (1 - v(s)/top)
			fmt.Fprintf(&b, "%.1f,%.1f ", x, y)
		}
		return strings.TrimSpace(b.String())
	}
	c.Accepted = line(func(s Sample) float64 { return s.Accepted })
	c.Settled = line(func(s Sample) float64 { return s.Settled })
	c.Failed = line(func(s Sample) float64 { return s.Failed })
	return c
}

// OverviewPage is GET /console: the overview, polling its fragment.
func (c *Console) OverviewPage(w http.ResponseWriter, r *http.Request) {
	c.render(w, r, http.StatusOK, "overview", page{Title: "Overview", Nav: "overview", Data: c.stats.get(r.Context())})
}

// OverviewFragment is GET /console/overview: the numbers and the chart
// alone, which the overview page swaps in every two seconds (htmx).
func (c *Console) OverviewFragment(w http.ResponseWriter, r *http.Request) {
	c.renderFragment(w, r, "overview", "stats", c.stats.get(r.Context()))
}
