package dispatcher

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	outcomes          *prometheus.CounterVec
	invalid           *prometheus.CounterVec
	transactions      *prometheus.CounterVec
	processingDropped prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dispatcher_outcomes_total",
			Help: "Final outcomes committed to payments.outcomes by status (succeeded, failed, unknown).",
		}, []string{"status"}),
		invalid: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dispatcher_invalid_records_total",
			Help: "payments.requested records skipped because they cannot be dispatched, by reason.",
		}, []string{"reason"}),
		transactions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dispatcher_transactions_total",
			Help: "Kafka transactions (one per poll) by result: committed, aborted (redelivered), failed.",
		}, []string{"result"}),
		processingDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dispatcher_processing_outcomes_dropped_total",
			Help: "Best-effort PROCESSING outcomes that could not be published.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.outcomes, m.invalid, m.transactions, m.processingDropped)
	}
	return m
}
