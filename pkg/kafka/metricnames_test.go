package kafka_test

import (
	"github.com/finsvc/finance/pkg/kafka"
	"github.com/finsvc/finance/pkg/testkit"
	"log/slog"
	"testing"
)

// TestExportedMetricNames keeps deploy/observability/metrics/kafka-client.txt,
// the metrics this package exports, true: the dashboard and alert rules
// are checked against it (go test ./deploy/observability/...).
func TestExportedMetricNames(t *testing.T) {
	t.Parallel()
	rec := testkit.NewNameRecorder()
	cl, err := kafka.NewClient([]string{"127.0.0.1:1"}, slog.New(slog.DiscardHandler), kafka.Metrics(rec, "test"))
	if err != nil {
		t.Fatal(err)
	}
	cl.Close()
	testkit.CheckMetricNames(t, "kafka-client", rec)
}
