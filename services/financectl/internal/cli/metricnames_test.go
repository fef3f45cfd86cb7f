package cli

import (
	"testing"

	"github.com/finsvc/finance/pkg/testkit"
)

// TestExportedMetricNames keeps deploy/observability/metrics/reconciler.txt,
// the metrics this package exports, true: the dashboard and alert rules
// are checked against it (go test ./deploy/observability/...).
func TestExportedMetricNames(t *testing.T) {
	t.Parallel()
	rec := testkit.NewNameRecorder()
	newReconcileMetrics(rec)
	newKafkaMetrics(rec, parseGroups(DefaultLagGroups), parseGroups(DefaultDLQTopics()))
	testkit.CheckMetricNames(t, "reconciler", rec)
}
