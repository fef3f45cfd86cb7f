package consumer

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/finsvc/finance/pkg/ledger"
	"github.com/finsvc/finance/pkg/payment"
)

// metrics are the consumer's Prometheus collectors.
type metrics struct {
	applied       *prometheus.CounterVec
	noops         *prometheus.CounterVec
	events        *prometheus.CounterVec
	rejected      *prometheus.CounterVec
	errors        *prometheus.CounterVec
	deferred      *prometheus.CounterVec
	conflicts     *prometheus.CounterVec
	headDeferrals *prometheus.GaugeVec // per partition: its head record deferred in a row
	applyDuration prometheus.Histogram
	batchSize     prometheus.Histogram
	batchDuration prometheus.Histogram
	timeToFinal   *prometheus.HistogramVec
}

// TimeToFinalBuckets are the buckets of
// status_consumer_payment_time_to_final_seconds. The SLO's threshold (10 s,
// docs/operations.md "The SLO") and the liveness bound (120 s) are bucket
// bounds, so the alert rules read them exactly.
var TimeToFinalBuckets = []float64{.05, .1, .25, .5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 3600}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		applied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "status_consumer_outcomes_applied_total",
			Help: "Outcomes that changed a payment's status, by new status.",
		}, []string{"status"}),
		noops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "status_consumer_outcomes_noop_total",
			Help: "Outcomes that changed nothing: duplicate (already in that status) or out_of_order (backwards or after a final status).",
		}, []string{"reason"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "status_consumer_events_emitted_total",
			Help: "PaymentEvents acknowledged by Kafka; replay=true for events rebuilt from the audit trail on redelivery.",
		}, []string{"replay"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "status_consumer_outcomes_rejected_total",
			Help: "Outcomes that can never apply (undecodable, invalid, unknown payment, ...), published to payments.outcomes.dlq and committed.",
		}, []string{"reason"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "status_consumer_errors_total",
			Help: "Failed attempts that are retried, by stage: apply (PostgreSQL), emit (Kafka produce), dlq (dead-letter produce), commit (offset commit).",
		}, []string{"stage"}),
		deferred: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "status_consumer_records_deferred_total",
			Help: "Records still failing after the retry timeout, by stage: their partition is rewound and they are fetched again.",
		}, []string{"stage"}),
		conflicts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "status_consumer_conflicts_total",
			Help: "Outcomes that contradict their payment's final status (from: the payment's status, to: the outcome), dead-lettered with reason conflict and recorded in outcome_conflicts; the ledger is left as it was.",
		}, []string{"from", "to"}),
		headDeferrals: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "status_consumer_record_deferrals",
			Help: "Times in a row the partition's head record was deferred (given up after the retry timeout and fetched again); 0 once it is processed. Every record behind it waits.",
		}, []string{"partition"}),
		applyDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "status_consumer_apply_duration_seconds",
			Help:    "Time of one outcome's PostgreSQL transaction, on the record-by-record path (a failed batch).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "status_consumer_batch_outcomes",
			Help:    "Outcomes applied in one batch transaction (one poll).",
			Buckets: []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000},
		}),
		batchDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "status_consumer_batch_duration_seconds",
			Help:    "Time of one batch's PostgreSQL transaction, failed or not.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}),
		timeToFinal: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "status_consumer_payment_time_to_final_seconds",
			Help:    "Seconds from a payment's acceptance (the time in its UUIDv7 uid) to the outcome that made it final (succeeded or failed), observed once, when the status consumer applies that outcome. The SLO on time to final state reads it.",
			Buckets: TimeToFinalBuckets,
		}, []string{"status"}),
	}
	for _, s := range []payment.Status{payment.StatusProcessing, payment.StatusSucceeded, payment.StatusFailed, payment.StatusUnknown} {
		m.applied.WithLabelValues(string(s))
	}
	for _, r := range []string{"duplicate", "out_of_order"} {
		m.noops.WithLabelValues(r)
	}
	m.events.WithLabelValues("false")
	m.events.WithLabelValues("true")
	for _, r := range []string{rejectUndecodable, rejectInvalid, rejectStale, rejectUnknownPayment, rejectUserMismatch,
		rejectConstraint, rejectDataException, rejectConflict} {
		m.rejected.WithLabelValues(r)
	}
	for _, s := range []string{"apply", "emit", "dlq", "commit"} {
		m.errors.WithLabelValues(s)
	}
	for _, s := range []string{"apply", "emit", "dlq"} {
		m.deferred.WithLabelValues(s)
	}
	// From 0, so that the first conflict is an increase the alert sees.
	m.conflicts.WithLabelValues(string(payment.StatusFailed), string(payment.StatusSucceeded))
	m.conflicts.WithLabelValues(string(payment.StatusSucceeded), string(payment.StatusFailed))
	for _, s := range []payment.Status{payment.StatusSucceeded, payment.StatusFailed} {
		m.timeToFinal.WithLabelValues(string(s))
	}
	reg.MustRegister(m.applied, m.noops, m.events, m.rejected, m.errors, m.deferred, m.conflicts, m.headDeferrals, m.applyDuration,
		m.batchSize, m.batchDuration, m.timeToFinal)
	return m
}

// observeFinal records, for an outcome that made a payment final, the time
// from its acceptance to the change: the uid is a UUIDv7 made at
// acceptance, whose time is that moment to the millisecond; the change's
// time is the event's. A payment whose uid carries no time (not v7) is not
// observed; clock skew between the gateway and PostgreSQL counts as 0.
func (m *metrics) observeFinal(status payment.Status, ev *ledger.Event) {
	if ev == nil || (status != payment.StatusSucceeded && status != payment.StatusFailed) || ev.PaymentUID.Version() != 7 {
		return
	}
	sec, nsec := ev.PaymentUID.Time().UnixTime()
	d := ev.OccurredAt.Sub(time.Unix(sec, nsec))
	m.timeToFinal.WithLabelValues(string(status)).Observe(max(d, 0).Seconds())
}
