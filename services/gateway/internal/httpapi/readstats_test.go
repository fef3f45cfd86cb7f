package httpapi

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestSharedStatementMetrics: each kind's statements and the reads they
// answered are exported as the store counts them, read at scrape time.
func TestSharedStatementMetrics(t *testing.T) {
	t.Parallel()
	counts := map[string][2]int64{"wallet": {3, 7}, "feed": {2, 9}}
	reg := prometheus.NewRegistry()
	registerSharedStatements(reg, func(kind string) (int64, int64) { return counts[kind][0], counts[kind][1] })
	counts["wallet"] = [2]int64{4, 11} // a scrape sees the counts of its moment
	want := `
# HELP gateway_read_statement_reads_total Reads answered by gateway_read_statements_total's statements, by kind (wallet, feed).
# TYPE gateway_read_statement_reads_total counter
gateway_read_statement_reads_total{kind="feed"} 9
gateway_read_statement_reads_total{kind="wallet"} 11
# HELP gateway_read_statements_total Statements the gateway ran on the primary for wallet reads and cold feed pages, by kind (wallet, feed); concurrent reads share one.
# TYPE gateway_read_statements_total counter
gateway_read_statements_total{kind="feed"} 2
gateway_read_statements_total{kind="wallet"} 4
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}
