package main

import (
	"testing"

	"github.com/finsvc/finance/pkg/testkit"
	"github.com/finsvc/finance/services/dispatcher/internal/dispatcher"
	"github.com/finsvc/finance/services/dispatcher/internal/pacer"
	"github.com/finsvc/finance/services/dispatcher/internal/processor"
)

// TestExportedMetricNames keeps deploy/observability/metrics/dispatcher.txt,
// the metrics this package exports, true: the dashboard and alert rules
// are checked against it (go test ./deploy/observability/...).
func TestExportedMetricNames(t *testing.T) {
	t.Parallel()
	rec := testkit.NewNameRecorder()
	processor.NewMetrics(rec)
	pacer.NewMetrics(rec)
	dispatcher.NewMetrics(rec)
	testkit.CheckMetricNames(t, "dispatcher", rec)
}
