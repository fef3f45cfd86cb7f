package obs_test

import (
	"testing"

	"github.com/finsvc/finance/pkg/testkit"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// TestExportedMetricNames keeps deploy/observability/metrics/runtime.txt,
// the metrics this package exports, true: the dashboard and alert rules
// are checked against it (go test ./deploy/observability/...).
func TestExportedMetricNames(t *testing.T) {
	t.Parallel()
	rec := testkit.NewNameRecorder()
	rec.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	testkit.CheckMetricNames(t, "runtime", rec)
}
