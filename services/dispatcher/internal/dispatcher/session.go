package dispatcher

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kslog"

	"github.com/finsvc/finance/pkg/kafka"
)

// NewSession returns the transactional consumer-producer of the dispatcher:
// it consumes payments.requested in group with read_committed isolation and
// produces under transactionalID, which must be unique per replica and
// stable across its restarts so that a zombie predecessor is fenced.
//
// It repeats pkg/kafka.NewClient's base options (that constructor returns a
// plain client, not a session) so that outcomes are partitioned by the same
// key hash as every other producer.
func NewSession(brokers []string, logger *slog.Logger, group, transactionalID string) (*kgo.GroupTransactSession, error) {
	sess, err := kgo.NewGroupTransactSession(
		kgo.SeedBrokers(brokers...),
		kgo.WithLogger(kslog.New(logger.With("component", "kafka"))),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
		kgo.ProducerLinger(2*time.Millisecond),
		kgo.TransactionalID(transactionalID),
		// A poll's transaction lasts as long as its slowest user chain.
		kgo.TransactionTimeout(2*time.Minute),
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(kafka.TopicRequested),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Never skip a payment: a new group, or a lost commit, starts at the
		// beginning of what the topic still holds.
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	if err != nil {
		return nil, fmt.Errorf("kafka transact session: %w", err)
	}
	return sess, nil
}

// ReportLag sets a gauge with the group's lag on payments.requested every
// interval until ctx ends. Errors are logged at debug: lag is a convenience.
func ReportLag(ctx context.Context, adm *kadm.Client, group string, interval time.Duration, logger *slog.Logger, reg prometheus.Registerer) {
	lag := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "dispatcher_consumer_lag_records",
		Help: "Records of payments.requested not yet committed by the dispatcher group.",
	})
	if reg != nil {
		reg.MustRegister(lag)
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		lags, err := adm.Lag(ctx, group)
		if err == nil {
			if l, ok := lags[group]; ok && l.Error() == nil {
				lag.Set(float64(l.Lag.TotalByTopic()[kafka.TopicRequested].Lag))
			}
		} else if ctx.Err() == nil {
			logger.DebugContext(ctx, "consumer lag", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
