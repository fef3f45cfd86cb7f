package report

import (
	"fmt"
	"strings"

	"github.com/finsvc/finance/loadtest/internal/target"
)

// Table is a Markdown table of runs, one row each, for docs/loadtest.md.
func Table(reps []*Report) string {
	var b strings.Builder
	b.WriteString("| scenario | target | users | req/s | payments sent | payments 2xx | payment p50 / p99 / max ms | feed p99 ms | drain | lost | paid twice | stuck | balance mismatch | executed, told failed | unresolved | verdict |\n")
	b.WriteString("|---|---|---:|---:|---:|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---|\n")
	for _, r := range reps {
		res := r.Result
		w := res.Writes
		drain := "-"
		if d := res.Drain; d.Applicable {
			drain = fmt.Sprintf("%.1f/s (%.2f L); %s", d.ExecRate, d.RateOfLimit, drainState(d))
		}
		if ps := res.Poll; ps != nil {
			drain += fmt.Sprintf("; polled: last final at %.1f s (%.2f × N/L), answer→visible p99 %.0f ms (client %.0f ms)",
				ps.LastFinalAt, ps.DrainOfIdeal, ps.ServerVisible.P99, ps.ClientVisible.P99)
		}
		feed := "-"
		if res.Reads.Sent > 0 {
			feed = fmt.Sprintf("%.1f", res.Reads.Latency.P99)
		}
		verdict := "passed"
		if !r.Passed {
			verdict = "**failed**"
		}
		c := res.Check
		fmt.Fprintf(&b, "| %s | %s | %d | %.0f | %d | %d | %.1f / %.1f / %.1f | %s | %s | %d | %d | %d | %d | %d | %d | %s |\n",
			r.Scenario, r.Target, res.Workload.Users, res.Workload.Rate, w.Sent, w.ByClass[string(target.OK)],
			w.Latency.P50, w.Latency.P99, w.Latency.Max, feed, drain,
			c.Lost, c.PaidTwice, c.Stuck, c.BalanceMismatch, c.ExecutedToldFailed, c.Unresolved, verdict)
	}
	return b.String()
}
