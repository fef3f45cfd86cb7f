// Package kafka holds the Finance Service's Kafka conventions: topic names,
// record keys, client construction and topic creation.
package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kslog"
)

// The topics of the pipeline. Every record is keyed by the decimal user id.
const (
	// TopicRequested carries PaymentRequested, from the outbox relay to the dispatcher.
	TopicRequested = "payments.requested"
	// TopicOutcomes carries PaymentOutcome, from the dispatcher to the status consumer.
	TopicOutcomes = "payments.outcomes"
	// TopicEvents carries PaymentEvent, from the status consumer (and, through the
	// outbox, the gateway's accepted events and the reconciler's resolutions) to push
	// and webhooks.
	TopicEvents = "payments.events"
)

// DefaultPartitions is the partition count of topics created by EnsureTopics.
const DefaultPartitions = 12

// Topics lists every topic the pipeline needs.
func Topics() []string {
	return []string{TopicRequested, TopicOutcomes, TopicEvents}
}

// DLQSuffix ends the name of a topic's dead-letter topic.
const DLQSuffix = ".dlq"

// DLQTopic returns the dead-letter topic of topic: "<topic>.dlq".
func DLQTopic(topic string) string {
	return topic + DLQSuffix
}

// DLQTopics lists the dead-letter topic of every topic in Topics. Tools that
// create the pipeline's topics create these too; Topics itself stays the
// list of the pipeline's data topics.
func DLQTopics() []string {
	ts := Topics()
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = DLQTopic(t)
	}
	return out
}

// UserKey is the record key of every record about userID.
func UserKey(userID int64) []byte {
	return strconv.AppendInt(nil, userID, 10)
}

// ParseUserKey is the inverse of UserKey.
func ParseUserKey(key []byte) (int64, error) {
	id, err := strconv.ParseInt(string(key), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("record key %q is not a user id", key)
	}
	return id, nil
}

// BaseOpts are the options every client of the service starts from: seed
// brokers, logging through logger, the key partitioner every producer
// must share, and traces (kotel: the trace context in every record's
// headers, see traceHooks). Constructors that do not return a plain client (e.g.
// kgo.NewGroupTransactSession) use them directly.
func BaseOpts(brokers []string, logger *slog.Logger) []kgo.Opt {
	return []kgo.Opt{
		kgo.SeedBrokers(brokers...),
		kgo.WithLogger(kslog.New(logger.With("component", "kafka"))),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)), // murmur2 by key, as the Java client
		kgo.ProducerLinger(2 * time.Millisecond),
		traceHooks(),
	}
}

// NewClient returns a franz-go client for brokers that logs through logger.
// Extra options (consumer group, transactional id, ...) come from the caller.
func NewClient(brokers []string, logger *slog.Logger, opts ...kgo.Opt) (*kgo.Client, error) {
	cl, err := kgo.NewClient(append(BaseOpts(brokers, logger), opts...)...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	return cl, nil
}

// EnsureTopics creates each topic with partitions partitions unless it
// already exists. Replication factor -1 takes the broker's default.
func EnsureTopics(ctx context.Context, cl *kgo.Client, partitions int32, topics ...string) error {
	adm := kadm.NewClient(cl)
	resp, err := adm.CreateTopics(ctx, partitions, -1, nil, topics...)
	if err != nil {
		return fmt.Errorf("create topics: %w", err)
	}
	for _, t := range resp.Sorted() {
		if t.Err != nil && !errors.Is(t.Err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("create topic %s: %w", t.Topic, t.Err)
		}
	}
	return nil
}

// Ping checks that a broker answers a metadata request.
func Ping(ctx context.Context, cl *kgo.Client) error {
	return cl.Ping(ctx)
}
