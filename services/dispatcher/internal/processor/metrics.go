package processor

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the processor client's Prometheus metrics.
type Metrics struct {
	calls       *prometheus.CounterVec
	latency     *prometheus.HistogramVec
	rateLimited prometheus.Counter
	inFlight    prometheus.Gauge
	lookups     *prometheus.CounterVec
	batchSize   prometheus.Histogram

	breakerState       prometheus.Gauge
	breakerTransitions *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them with reg unless reg is nil.
// One Opts literal per metric, alike by design: each reads as the metric's
// documentation (name, help, labels); a constructor helper would hide them.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dispatcher_processor_calls_total",
			Help: "Calls to the processor by result (succeeded, declined, rejected, conflict, rate_limited, over_capacity, unavailable, unreachable, timeout, transport_error, lost_reply, server_error, unparsable, cancelled, batch_unsupported); a payment in a batch call counts as one call.",
		}, []string{"result"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "dispatcher_processor_call_duration_seconds",
			Help:    "Duration of HTTP calls to the processor by result.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2, 5},
		}, []string{"result"}),
		rateLimited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dispatcher_processor_rate_limited_total",
			Help: "429 answers seen from the processor.",
		}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "dispatcher_processor_in_flight_calls",
			Help: "HTTP calls to the processor currently waiting for an answer.",
		}),
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dispatcher_processor_lookups_total",
			Help: "Lookups of a payment's idempotency key (proposed API) after every call was refused, by result: succeeded, declined, not_found, error.",
		}, []string{"result"}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "dispatcher_processor_batch_payments",
			Help:    "Payments per batch call to the processor (PROCESSOR_BATCH_MAX); each payment is also counted in dispatcher_processor_calls_total.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 100},
		}),
		breakerState: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "dispatcher_processor_breaker_state",
			Help: "Circuit breaker state: 0 closed, 1 half-open, 2 open (no calls sent).",
		}),
		breakerTransitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dispatcher_processor_breaker_transitions_total",
			Help: "Circuit breaker state changes by the state entered.",
		}, []string{"to"}),
	}
	if reg != nil {
		reg.MustRegister(m.calls, m.latency, m.rateLimited, m.inFlight, m.lookups, m.batchSize, m.breakerState, m.breakerTransitions)
	}
	return m
}

// observe counts one payment's call, answered after seconds.
func (m *Metrics) observe(r reply, seconds float64) {
	m.latency.WithLabelValues(r.label).Observe(seconds)
	m.calls.WithLabelValues(r.label).Inc()
	if r.label == "rate_limited" {
		m.rateLimited.Inc()
	}
}
