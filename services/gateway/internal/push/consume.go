package push

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"

	"github.com/finsvc/finance/pkg/kafka"
	"github.com/finsvc/finance/pkg/wire"
)

// StartLookback is how far before its start a hub begins reading
// payments.events: records stamped from then on are read, so that an event
// produced while the client was still looking up the partitions' ends is not
// missed, with a margin for clocks that disagree. A repeated event costs
// nothing: streams order and deduplicate by user_seq.
const StartLookback = 10 * time.Second

// NewClient returns the hub's Kafka client: it reads every partition of
// payments.events with no consumer group, so every gateway instance sees
// every event, from the records stamped StartLookback before now (in
// effect, the end of each partition). It commits nothing. opts are more
// client options: an external cluster's SASL and TLS (kafka.SecurityOpts).
func NewClient(brokers []string, logger *slog.Logger, now time.Time, opts ...kgo.Opt) (*kgo.Client, error) {
	return kafka.NewClient(brokers, logger, append([]kgo.Opt{
		kgo.ConsumeTopics(kafka.TopicEvents),
		kgo.ConsumeResetOffset(kgo.NewOffset().AfterMilli(now.Add(-StartLookback).UnixMilli())),
		// The status consumer's events are plain produces; transactional
		// producers' aborted records must not reach clients either way.
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.FetchMaxWait(500 * time.Millisecond),
	}, opts...)...)
}

// spanPush names the span of one event's push to the hub's streams.
const spanPush = "push event"

// tracer starts the push spans from OpenTelemetry's global provider
// (obs.StartTracing), which it follows even when set later.
var tracer = otel.Tracer("github.com/finsvc/finance/services/gateway/internal/push")

// Consume feeds the hub from cl until ctx ends. Records that do not decode
// are counted and skipped: they concern no client the hub could name. Fetch
// errors are logged; the client retries by itself.
func (h *Hub) Consume(ctx context.Context, cl *kgo.Client) error {
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if fs.IsClientClosed() {
			return errors.New("push: kafka client closed")
		}
		fs.EachError(func(topic string, p int32, err error) {
			if errors.Is(err, context.Canceled) {
				return
			}
			h.logger.WarnContext(ctx, "push: fetch failed", "topic", topic, "partition", p, "err", err)
		})
		fs.EachRecord(func(r *kgo.Record) {
			ev, err := wire.DecodeEvent(r.Value)
			if err != nil {
				h.m.decodeErrors.Inc()
				h.logger.WarnContext(ctx, "push: skipping an event that does not decode", "topic", r.Topic,
					"partition", r.Partition, "offset", r.Offset, "err", err)
				return
			}
			// The payment's trace reaches the push through the record's
			// headers (kotel's receive span in r.Context): one span per
			// event, around waking its user's streams and long-polls.
			_, span := tracer.Start(r.Context, spanPush)
			if span.IsRecording() {
				span.SetAttributes(attribute.Int64("payment_id", ev.PaymentID), attribute.Int64("user_id", ev.UserID),
					attribute.String("status", string(ev.Status)))
			}
			h.Publish(ev)
			span.End()
		})
	}
}
