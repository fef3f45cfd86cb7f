package kafka_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/finsvc/finance/pkg/kafka"
	"github.com/finsvc/finance/pkg/kafkatest"
)

// TestMetrics: two clients of one registry export kprom's metrics side by
// side, told apart by their client label; produced and fetched records
// count per topic; a closed client's metrics go, so its name can be used
// again.
func TestMetrics(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cluster := kafkatest.New(t, 1, []string{kafka.TopicEvents})
	reg := prometheus.NewRegistry()
	logger := slog.New(slog.DiscardHandler)
	prod, err := kafka.NewClient(cluster.Brokers(), logger, kafka.Metrics(reg, "producer"))
	if err != nil {
		t.Fatal(err)
	}
	cons, err := kafka.NewClient(cluster.Brokers(), logger, kafka.Metrics(reg, "consumer"),
		kgo.ConsumeTopics(kafka.TopicEvents), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	for range 3 {
		if err := prod.ProduceSync(ctx, &kgo.Record{Topic: kafka.TopicEvents, Value: []byte("x")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	fetched := 0
	for fetched < 3 {
		fs := cons.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatal(err)
		}
		fetched += fs.NumRecords()
	}
	produced := `
# HELP kafka_produce_records_total Total number of records produced
# TYPE kafka_produce_records_total counter
kafka_produce_records_total{client="producer",topic="payments.events"} 3
`
	if err := testutil.GatherAndCompare(reg, stringsReader(produced), "kafka_produce_records_total"); err != nil {
		t.Error(err)
	}
	fetchedWant := `
# HELP kafka_fetch_records_total Total number of records fetched
# TYPE kafka_fetch_records_total counter
kafka_fetch_records_total{client="consumer",topic="payments.events"} 3
`
	if err := testutil.GatherAndCompare(reg, stringsReader(fetchedWant), "kafka_fetch_records_total"); err != nil {
		t.Error(err)
	}

	prod.Close()
	again, err := kafka.NewClient(cluster.Brokers(), logger, kafka.Metrics(reg, "producer"))
	if err != nil {
		t.Fatal(err)
	}
	again.Close()
}

func stringsReader(s string) *strings.Reader { return strings.NewReader(s) }
