package delivery

import "github.com/prometheus/client_golang/prometheus"

// metrics are the service's Prometheus collectors.
type metrics struct {
	enqueued    prometheus.Counter
	undecodable prometheus.Counter
	attempts    *prometheus.CounterVec
	latency     prometheus.Histogram
	dlq         prometheus.Counter
	disabled    *prometheus.CounterVec
	breaker     *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		enqueued: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "webhook_messages_enqueued_total",
			Help: "Messages written to the queue (one per matching endpoint and event; a redelivered event adds none).",
		}),
		undecodable: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "webhook_events_undecodable_total",
			Help: "payments.events records that did not decode (logged and skipped).",
		}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "webhook_attempts_total",
			Help: "Delivery attempts by what they decided: delivered, retry, given_up (to the DLQ), gone (410).",
		}, []string{"result"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "webhook_attempt_duration_seconds",
			Help:    "Time from the request to the answer (or the error).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12),
		}),
		dlq: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "webhook_dlq_total",
			Help: "Messages whose retries were spent, published to the webhook DLQ topic.",
		}),
		disabled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "webhook_endpoints_disabled_total",
			Help: "Endpoints the service disabled: gone (410) or given_up (kept failing).",
		}, []string{"reason"}),
		breaker: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "webhook_breaker_transitions_total",
			Help: "Per-endpoint circuit breaker changes, by the state entered.",
		}, []string{"to"}),
	}
	reg.MustRegister(m.enqueued, m.undecodable, m.attempts, m.latency, m.dlq, m.disabled, m.breaker)
	return m
}
