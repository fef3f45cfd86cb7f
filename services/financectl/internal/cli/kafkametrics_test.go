package cli

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/finsvc/finance/pkg/kafka"
	"github.com/finsvc/finance/pkg/kafkatest"
	"github.com/finsvc/finance/pkg/pgtest"
)

// TestKafkaMetrics: the reconciler's Kafka gauges read the brokers'
// offsets: a group's lag is the end offset less its commit, per topic; a
// dead-letter topic's depth is what it retains, and its unreplayed count
// leaves out the letters the replay audit holds as replayed (and only
// those: a dry run's would_replay counts as not replayed).
func TestKafkaMetrics(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cluster := kafkatest.New(t, 1, append(kafka.Topics(), kafka.DLQTopics()...))
	cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.Brokers()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	pool := pgtest.NewPool(t)

	produce := func(topic string, n int) {
		t.Helper()
		for range n {
			if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("x")}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	produce(kafka.TopicOutcomes, 5)
	produce(kafka.DLQTopic(kafka.TopicRequested), 3)
	produce(kafka.DLQTopic(kafka.TopicOutcomes), 1)

	adm := kadm.NewClient(cl)
	offsets := kadm.Offsets{}
	offsets.Add(kadm.Offset{Topic: kafka.TopicOutcomes, Partition: 0, At: 2, LeaderEpoch: -1})
	if err := adm.CommitAllOffsets(ctx, "status-consumer", offsets); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `
WITH r AS (INSERT INTO dlq_replays (actor, dry_run, filter, rate) VALUES ('cli:test', false, '{}', 10) RETURNING id)
INSERT INTO dlq_replayed_records (replay_id, dlq_topic, dlq_partition, dlq_offset, original_topic, original_partition, original_offset, outcome)
SELECT id, 'payments.requested.dlq', 0, o, 'payments.requested', 0, o, oc FROM r,
  (VALUES (0, 'replayed'), (0, 'replayed'), (1, 'would_replay')) AS v (o, oc)
ON CONFLICT DO NOTHING`); err != nil {
		t.Fatal(err)
	}
	// The same offset replayed twice (two runs, --force) counts once.
	if _, err := pool.Exec(ctx, `
WITH r AS (INSERT INTO dlq_replays (actor, dry_run, force, filter, rate) VALUES ('cli:test', false, true, '{}', 10) RETURNING id)
INSERT INTO dlq_replayed_records (replay_id, dlq_topic, dlq_partition, dlq_offset, original_topic, original_partition, original_offset, outcome)
SELECT id, 'payments.requested.dlq', 0, 0, 'payments.requested', 0, 0, 'replayed' FROM r`); err != nil {
		t.Fatal(err)
	}

	// payments.webhooks.dlq does not exist on this cluster: it counts as empty.
	m := newKafkaMetrics(prometheus.NewRegistry(), []string{"status-consumer"}, parseGroups(DefaultDLQTopics()))
	if err := m.refresh(ctx, adm, pool); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		got  prometheus.Gauge
		want float64
	}{
		{"lag", m.lag.WithLabelValues("status-consumer", kafka.TopicOutcomes), 3},
		{"requested dlq depth", m.dlqDepth.WithLabelValues("payments.requested.dlq"), 3},
		{"requested dlq unreplayed", m.unreplayed.WithLabelValues("payments.requested.dlq"), 2},
		{"outcomes dlq depth", m.dlqDepth.WithLabelValues("payments.outcomes.dlq"), 1},
		{"outcomes dlq unreplayed", m.unreplayed.WithLabelValues("payments.outcomes.dlq"), 1},
		{"events dlq depth", m.dlqDepth.WithLabelValues("payments.events.dlq"), 0},
		{"webhooks dlq depth", m.dlqDepth.WithLabelValues(WebhooksDLQTopic), 0},
	} {
		if got := testutil.ToFloat64(tc.got); got != tc.want {
			t.Errorf("%s = %v, want %v", tc.name, got, tc.want)
		}
	}

	// The group catches up: its lag goes to 0.
	offsets.Add(kadm.Offset{Topic: kafka.TopicOutcomes, Partition: 0, At: 5, LeaderEpoch: -1})
	if err := adm.CommitAllOffsets(ctx, "status-consumer", offsets); err != nil {
		t.Fatal(err)
	}
	if err := m.refresh(ctx, adm, pool); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(m.lag.WithLabelValues("status-consumer", kafka.TopicOutcomes)); got != 0 {
		t.Errorf("lag after the commit = %v, want 0", got)
	}
}
