package relay

import "github.com/prometheus/client_golang/prometheus"

// metrics are the relay's Prometheus collectors.
type metrics struct {
	published     prometheus.Counter
	batches       prometheus.Counter
	publishErrors prometheus.Counter
	batchDuration prometheus.Histogram
	backlog       prometheus.Gauge
	oldestAge     prometheus.Gauge
	leader        prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "outbox_relay_records_published_total",
			Help: "Outbox records acknowledged by Kafka and deleted from the outbox.",
		}),
		batches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "outbox_relay_batches_total",
			Help: "Non-empty outbox batches the relay tried to publish.",
		}),
		publishErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "outbox_relay_publish_errors_total",
			Help: "Outbox batches that failed, wholly or after an acknowledged prefix: Kafka refused a record, or PostgreSQL failed.",
		}),
		batchDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "outbox_relay_batch_duration_seconds",
			Help:    "Time to read, publish and delete one outbox batch.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		backlog: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "outbox_relay_backlog_records",
			Help: "Outbox rows waiting to be published, sampled periodically.",
		}),
		oldestAge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "outbox_relay_oldest_record_age_seconds",
			Help: "Age of the oldest outbox row waiting to be published, sampled periodically (0 when empty).",
		}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "outbox_relay_leader",
			Help: "1 while this relay holds the outbox advisory lock and publishes, 0 while it stands by.",
		}),
	}
	reg.MustRegister(m.published, m.batches, m.publishErrors, m.batchDuration, m.backlog, m.oldestAge, m.leader)
	return m
}
