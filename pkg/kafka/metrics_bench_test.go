package kafka_test

import (
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/finsvc/finance/pkg/kafka"
)

// kpromHooks are the hooks kprom implements that run per batch and per
// request.
type kpromHooks interface {
	kgo.HookProduceBatchWritten
	kgo.HookFetchBatchRead
	kgo.HookBrokerE2E
}

// hooksOf returns the kprom hooks a client made with kafka.Metrics runs.
func hooksOf(b *testing.B, reg prometheus.Registerer) kpromHooks {
	b.Helper()
	cl, err := kafka.NewClient([]string{"127.0.0.1:1"}, slog.New(slog.DiscardHandler), kafka.Metrics(reg, "bench"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(cl.Close)
	for _, h := range cl.OptValues(kgo.WithHooks) {
		for _, hh := range h.([]kgo.Hook) {
			if k, ok := hh.(kpromHooks); ok {
				return k
			}
		}
	}
	b.Fatal("no kprom hook on the client")
	return nil
}

// BenchmarkKpromPerPayment is the CPU the kprom hooks cost one payment in
// the worst case, every record alone in its batch and request: a payment
// is produced 4 times (payments.requested by the relay, the early
// processing outcome and the final outcome by the dispatcher,
// payments.events by the status consumer) and fetched 4 times (dispatcher,
// status consumer, webhook delivery, gateway push), each produce and fetch
// one broker request. docs/operations.md reports it:
//
//	go test -run '^$' -bench 'KpromPerPayment' -benchmem ./pkg/kafka/
func BenchmarkKpromPerPayment(b *testing.B) {
	h := hooksOf(b, prometheus.NewRegistry())
	meta := kgo.BrokerMetadata{NodeID: 1, Host: "127.0.0.1", Port: 9092}
	e2e := kgo.BrokerE2E{BytesWritten: 300, BytesRead: 200, WriteWait: time.Microsecond, TimeToWrite: time.Microsecond,
		ReadWait: 100 * time.Microsecond, TimeToRead: time.Microsecond}
	topics := []string{kafka.TopicRequested, kafka.TopicOutcomes, kafka.TopicOutcomes, kafka.TopicEvents}
	b.ReportAllocs()
	for b.Loop() {
		for _, t := range topics {
			h.OnProduceBatchWritten(meta, t, 0, kgo.ProduceBatchMetrics{NumRecords: 1, UncompressedBytes: 200, CompressedBytes: 200})
			h.OnBrokerE2E(meta, 0, e2e)
		}
		for _, t := range []string{kafka.TopicRequested, kafka.TopicOutcomes, kafka.TopicEvents, kafka.TopicEvents} {
			h.OnFetchBatchRead(meta, t, 0, kgo.FetchBatchMetrics{NumRecords: 1, UncompressedBytes: 200, CompressedBytes: 200})
			h.OnBrokerE2E(meta, 1, e2e)
		}
	}
}
