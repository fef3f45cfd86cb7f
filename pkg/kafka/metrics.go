package kafka

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kprom"
)

// MetricsNamespace prefixes the franz-go client metrics (kafka_...).
const MetricsNamespace = "kafka"

// Metrics returns the option that exports a client's own metrics into reg
// through franz-go's kprom plugin: connections, bytes and errors per
// broker, request latency, produced and fetched records and bytes per
// topic, and the records buffered in the client, each labelled
// client=<client>. Every client of a service takes it, each with its own
// name (two live clients of one name in one registry would collide; a
// closed client's metrics are unregistered, so a name can be reused after
// Close). A nil reg exports nothing.
//
// Consumer group lag is not here: a client knows what it fetched, not what
// its group committed; the reconciler reports lag per group from the
// brokers' offsets (kadm's Lag, financectl reconcile --metrics-addr).
func Metrics(reg prometheus.Registerer, client string) kgo.Opt {
	if reg == nil {
		return kgo.WithHooks()
	}
	return kgo.WithHooks(kprom.NewMetrics(MetricsNamespace,
		kprom.Registerer(reg),
		kprom.WithStaticLabel(prometheus.Labels{"client": client}),
		kprom.FetchAndProduceDetail(kprom.ByTopic, kprom.Records, kprom.UncompressedBytes, kprom.ConsistentNaming),
	))
}
