package httpapi

import (
	"testing"

	"github.com/finsvc/finance/pkg/testkit"
)

// TestExportedMetricNames keeps deploy/observability/metrics/gateway-httpapi.txt,
// the metrics this package exports, true: the dashboard and alert rules
// are checked against it (go test ./deploy/observability/...).
func TestExportedMetricNames(t *testing.T) {
	t.Parallel()
	rec := testkit.NewNameRecorder()
	newMetrics(rec)
	newLimiters(Limits{}, rec)
	newReadMetrics(rec, nil)
	testkit.CheckMetricNames(t, "gateway-httpapi", rec)
}
