package pacer

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the pacer's Prometheus gauges.
type Metrics struct {
	limit       prometheus.Gauge
	share       prometheus.Gauge
	fraction    prometheus.Gauge
	rate        prometheus.Gauge
	callRate    prometheus.Gauge
	utilization prometheus.Gauge
	rateLimited prometheus.Counter
	lateSlots   prometheus.Counter
}

// NewMetrics creates the gauges and registers them with reg unless reg is nil.
// One Opts literal per metric, alike by design: each reads as the metric's
// documentation (name, help, labels); a constructor helper would hide them.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		limit: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "dispatcher_processor_rate_limit_per_second",
			Help: "The processor's global limit L (PROCESSOR_RATE_LIMIT); 0 when unknown and probed.",
		}),
		share: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "dispatcher_pacer_share_per_second",
			Help: "This replica's share of L: L x partitions owned / partitions of the topic (0 when L is unknown).",
		}),
		fraction: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "dispatcher_pacer_partition_fraction",
			Help: "Partitions of payments.requested owned by this replica / partitions of the topic.",
		}),
		rate: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "dispatcher_pacer_rate_per_second",
			Help: "Current call rate allowed by the pacer (AIMD), at most the share when L is known.",
		}),
		callRate: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "dispatcher_processor_call_rate_per_second",
			Help: "Processor calls per second made by this replica, measured over the last 10 s.",
		}),
		utilization: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "dispatcher_processor_utilization_ratio",
			Help: "Measured call rate / this replica's share of L (or / the learnt rate when L is unknown).",
		}),
		rateLimited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dispatcher_pacer_rate_limited_signals_total",
			Help: "429 (or as-is over-capacity 503) answers the pacer adapted to.",
		}),
		lateSlots: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dispatcher_pacer_late_slots_total",
			Help: "Calls that woke more than 50 ms after their token's time (a stall) and took a fresh one instead of bursting.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.limit, m.share, m.fraction, m.rate, m.callRate, m.utilization, m.rateLimited, m.lateSlots)
	}
	return m
}
