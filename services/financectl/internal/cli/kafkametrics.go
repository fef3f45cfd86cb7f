package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/finsvc/finance/pkg/kafka"
)

// DefaultLagGroups are the consumer groups whose lag the reconciler reports
// (--lag-groups): the dispatcher's (DISPATCHER_GROUP's default), the status
// consumer's and webhook delivery's. The gateway's push consumer has no group.
const DefaultLagGroups = "dispatcher,status-consumer,webhook-delivery"

// WebhooksDLQTopic is webhook delivery's dead-letter topic
// (WEBHOOK_DLQ_TOPIC's default), whose depth the reconciler reports beside
// kafka.DLQTopics.
const WebhooksDLQTopic = "payments.webhooks.dlq"

// DefaultDLQTopics are the dead-letter topics whose depth the reconciler
// reports (--dlq-topics).
func DefaultDLQTopics() string {
	return strings.Join(append(kafka.DLQTopics(), WebhooksDLQTopic), ",")
}

// kafkaMetrics are the pipeline's Kafka gauges, computed in one place (the
// reconciler, one process, so no replica doubles them) from the brokers'
// offsets: the lag of each consumer group (kadm's Lag: end offset minus the
// group's committed offset, per partition, summed per topic) and the depth
// of each dead-letter topic, with how much of it no one has replayed yet
// (the replay audit, dlq_replayed_records).
type kafkaMetrics struct {
	lag        *prometheus.GaugeVec
	dlqDepth   *prometheus.GaugeVec
	unreplayed *prometheus.GaugeVec
	groups     []string
	dlqTopics  []string
}

func newKafkaMetrics(reg prometheus.Registerer, groups, dlqTopics []string) *kafkaMetrics {
	m := &kafkaMetrics{
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "finance_consumer_group_lag_records",
			Help: "Records a consumer group has not committed yet (end offset minus committed offset, summed over the topic's partitions), as of the reconciler's last pass.",
		}, []string{"group", "topic"}),
		dlqDepth: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "finance_dlq_depth_records",
			Help: "Records retained in each dead-letter topic (end offset minus start offset, summed over partitions), as of the reconciler's last pass.",
		}, []string{"topic"}),
		unreplayed: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "finance_dlq_unreplayed_records",
			Help: "Dead letters retained and never replayed (finance_dlq_depth_records less those dlq_replayed_records holds as replayed).",
		}, []string{"topic"}),
		groups:    groups,
		dlqTopics: dlqTopics,
	}
	reg.MustRegister(m.lag, m.dlqDepth, m.unreplayed)
	for _, t := range dlqTopics {
		m.dlqDepth.WithLabelValues(t)
		m.unreplayed.WithLabelValues(t)
	}
	return m
}

// parseGroups splits a comma-separated list of group names.
func parseGroups(s string) []string {
	var out []string
	for g := range strings.SplitSeq(s, ",") {
		if g = strings.TrimSpace(g); g != "" {
			out = append(out, g)
		}
	}
	return out
}

// replayedSQL counts, per dead-letter partition, the distinct offsets still
// retained (at or above the partition's start offset) that were replayed.
const replayedSQL = `
SELECT l.topic, l.part, count(DISTINCT r.dlq_offset)
FROM unnest($1::text[], $2::int[], $3::bigint[]) AS l (topic, part, start)
JOIN dlq_replayed_records r
  ON r.dlq_topic = l.topic AND r.dlq_partition = l.part AND r.dlq_offset >= l.start AND r.outcome = 'replayed'
GROUP BY l.topic, l.part`

// refresh reads the offsets and sets the gauges. A group that cannot be
// described keeps its last values and is reported in the error; the others
// are set. A dead-letter topic that does not exist (yet: nothing was ever
// dead-lettered there, or it is created on first use) counts as empty.
func (m *kafkaMetrics) refresh(ctx context.Context, adm *kadm.Client, db *pgxpool.Pool) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var errs []error

	lags, err := adm.Lag(ctx, m.groups...)
	if err != nil {
		errs = append(errs, fmt.Errorf("consumer group lag: %w", err))
	}
	for _, l := range lags {
		if err := l.Error(); err != nil {
			errs = append(errs, fmt.Errorf("lag of group %s: %w", l.Group, err))
			continue
		}
		for topic, tl := range l.Lag.TotalByTopic() {
			m.lag.WithLabelValues(l.Group, topic).Set(float64(tl.Lag))
		}
	}

	topics := m.dlqTopics
	starts, err := adm.ListStartOffsets(ctx, topics...)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("dead-letter start offsets: %w", err))...)
	}
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("dead-letter end offsets: %w", err))...)
	}
	depth := map[string]int64{}
	var qTopics []string
	var qParts []int32
	var qStarts []int64
	ends.Each(func(e kadm.ListedOffset) {
		if errors.Is(e.Err, kerr.UnknownTopicOrPartition) {
			return
		}
		if e.Err != nil {
			errs = append(errs, fmt.Errorf("end offset of %s/%d: %w", e.Topic, e.Partition, e.Err))
			return
		}
		s, ok := starts.Lookup(e.Topic, e.Partition)
		if !ok || s.Err != nil {
			errs = append(errs, fmt.Errorf("start offset of %s/%d missing", e.Topic, e.Partition))
			return
		}
		depth[e.Topic] += max(e.Offset-s.Offset, 0)
		qTopics, qParts, qStarts = append(qTopics, e.Topic), append(qParts, e.Partition), append(qStarts, s.Offset)
	})
	replayed := map[string]int64{}
	if db != nil && len(qTopics) > 0 {
		rows, err := db.Query(ctx, replayedSQL, qTopics, qParts, qStarts)
		if err != nil {
			return errors.Join(append(errs, fmt.Errorf("read replay audit: %w", err))...)
		}
		var (
			topic string
			part  int32
			n     int64
		)
		if _, err := pgx.ForEachRow(rows, []any{&topic, &part, &n}, func() error {
			replayed[topic] += n
			return nil
		}); err != nil {
			return errors.Join(append(errs, fmt.Errorf("read replay audit: %w", err))...)
		}
	}
	for _, t := range topics {
		m.dlqDepth.WithLabelValues(t).Set(float64(depth[t]))
		m.unreplayed.WithLabelValues(t).Set(float64(max(depth[t]-replayed[t], 0)))
	}
	return errors.Join(errs...)
}
