package dispatcher

import "github.com/prometheus/client_golang/prometheus"

// Reasons a record is dead-lettered without being dispatched (label
// "reason" of dispatcher_dead_letters_total, and the dlq-reason header).
// Unknown payments are dead-lettered with their processor.Cause* reason.
const (
	ReasonUndecodable = "undecodable"
	ReasonMissingIDs  = "missing_ids"
	ReasonKeyMismatch = "key_mismatch"
	// ReasonStale: the record names a payment (id and uid) that this
	// database does not hold: a record left in Kafka from before a database
	// restore, or made for another database, or one without a uid (made
	// before migration 00004). It is never sent.
	ReasonStale = "stale"
)

// CauseGuardFailed is the dead-letter reason of a payment whose dispatch
// guard could not read the database for its whole retry budget: not sent by
// this call, but maybe by an earlier owner, so it ends unknown.
const CauseGuardFailed = "guard_failed"

// CauseRedelivered is the dead-letter reason of an as-is payment found
// already claimed: an earlier owner may have sent it (a crash or a lost
// partition while its call was in flight), so it is not sent again and ends
// unknown, for reconciliation against the processor's statement.
const CauseRedelivered = "as_is_redelivered"

// ReasonRedeliveredAsIs is the unknown outcome's reason for CauseRedelivered.
const ReasonRedeliveredAsIs = "may already have been sent to the processor (as-is API, redelivered); not sent again, resolved by reconciliation"

// CauseKeyExpired is the dead-letter reason of a payment (proposed API)
// that may have been sent before (processing or unknown) and was accepted
// longer ago than the processor keeps idempotency keys: its key may be
// forgotten, so a second call could execute it twice. It is not sent and
// ends unknown, for reconciliation.
const CauseKeyExpired = "key_expired"

// ReasonKeyExpired is the unknown outcome's reason for CauseKeyExpired.
const ReasonKeyExpired = "may already have been sent to the processor, and was accepted longer ago than the processor keeps idempotency keys (PROCESSOR_KEY_RETENTION): a second call might execute it twice; not sent again, resolved by reconciliation"

// Metrics are the pipeline's Prometheus metrics.
type Metrics struct {
	outcomes          *prometheus.CounterVec
	deadLetters       *prometheus.CounterVec
	transactions      *prometheus.CounterVec
	processingDropped prometheus.Counter
	inFlight          prometheus.Gauge
	buffered          prometheus.Gauge
	owned             prometheus.Gauge
	dispatchDelay     prometheus.Histogram
	backlog           *prometheus.GaugeVec
	drain             prometheus.Gauge
	commitDuration    prometheus.Histogram
	guard             *prometheus.CounterVec
	revokedCalls      prometheus.Counter
}

// NewMetrics creates the metrics and registers them with reg unless reg is nil.
// One Opts literal per metric, alike by design: each reads as the metric's
// documentation (name, help, labels); a constructor helper would hide them.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dispatcher_outcomes_total",
			Help: "Final outcomes committed to payments.outcomes by status (succeeded, failed, unknown).",
		}, []string{"status"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dispatcher_dead_letters_total",
			Help: "payments.requested records committed to payments.requested.dlq, by reason: undecodable, missing_ids, key_mismatch (never dispatched), or why an unknown payment could not be resolved (retry_budget_spent, ambiguous_not_retried, ...).",
		}, []string{"reason"}),
		transactions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dispatcher_transactions_total",
			Help: "Kafka transactions (one per commit interval with work) by result: committed, aborted (redelivered), failed.",
		}, []string{"result"}),
		processingDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dispatcher_processing_outcomes_dropped_total",
			Help: "Best-effort PROCESSING outcomes that could not be published.",
		}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "dispatcher_payments_in_flight",
			Help: "Payments being dispatched now (one per user at most), waits for the pacer included.",
		}),
		buffered: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "dispatcher_buffered_records",
			Help: "payments.requested records held in memory, queued or in flight.",
		}),
		owned: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "dispatcher_partitions_owned",
			Help: "Partitions of payments.requested assigned to this replica.",
		}),
		dispatchDelay: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "dispatcher_queue_delay_seconds",
			Help:    "Time from a record's fetch to the start of its dispatch (waiting behind the user's earlier payments or the in-flight bound).",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300},
		}),
		backlog: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "dispatcher_backlog_records",
			Help: "Consumer lag of the group on payments.requested, per partition owned by this replica (sampled with kadm).",
		}, []string{"partition"}),
		guard: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dispatcher_guard_total",
			Help: "Dispatch guard verdicts, one per payment before its processor call: send, stale (not a payment of this database: dead-lettered), final (already succeeded or failed: not sent again), claimed (as-is API, claimed before: not sent, unknown), key_expired (proposed API, processing or unknown and accepted longer ago than the processor keeps keys: not sent, unknown), error (the database could not be read: not sent, failed).",
		}, []string{"result"}),
		revokedCalls: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dispatcher_revoked_calls_cancelled_total",
			Help: "In-flight dispatches cancelled because their partition was revoked or lost (the new owner dispatches them again).",
		}),
		drain: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "dispatcher_expected_drain_seconds",
			Help: "Backlog of this replica's partitions / its current pacer rate: the time to drain at the current pace.",
		}),
		commitDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "dispatcher_transaction_end_seconds",
			Help:    "Time to flush, end and begin a transaction; polls wait for it.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}),
	}
	if reg != nil {
		reg.MustRegister(m.outcomes, m.deadLetters, m.transactions, m.processingDropped, m.inFlight,
			m.buffered, m.owned, m.dispatchDelay, m.backlog, m.drain, m.commitDuration, m.guard, m.revokedCalls)
	}
	return m
}
