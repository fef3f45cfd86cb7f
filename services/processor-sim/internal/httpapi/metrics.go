package httpapi

import (
	"errors"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/finsvc/finance/services/processor-sim/internal/sim"
)

// Stats are the counters served by GET /sim/stats, since this process started.
type Stats struct {
	// Calls counts payment calls (POST /payment, POST /v2/payments), bad
	// ones included. Each payment of a batch counts as the call it stands
	// for; a batch refused whole as malformed counts as one bad call.
	Calls int64 `json:"calls"`
	// Batches counts POST /v2/payment-batches requests.
	Batches int64 `json:"batches"`
	// Executed counts payments executed by this process (money moved).
	Executed int64 `json:"executed"`
	// Declined counts payments settled as declined.
	Declined int64 `json:"declined"`
	// Replayed counts calls answered from an idempotency key, nothing run again.
	Replayed int64 `json:"replayed"`
	// RateLimited counts calls refused above the rate limit (429, or 503 in as-is).
	RateLimited int64 `json:"rate_limited"`
	// ErrorsInjected counts simulated 500s.
	ErrorsInjected int64 `json:"errors_injected"`
	// ResponsesDropped counts connections closed instead of replying.
	ResponsesDropped int64 `json:"responses_dropped"`
	// OutageRejected counts calls refused during an outage.
	OutageRejected int64 `json:"outage_rejected"`
	// KeyReuse counts 422s for an idempotency key used with another body.
	KeyReuse int64 `json:"key_reuse"`
	// BadRequests counts 400s.
	BadRequests int64 `json:"bad_requests"`
	// ClientGone counts calls whose caller left before the reply.
	ClientGone int64 `json:"client_gone"`
	// Lookups counts GET /v2/payments/{key}.
	Lookups int64 `json:"lookups"`
	// ExecutionsRecorded is the size of the execution record, reloaded ones included.
	ExecutionsRecorded int `json:"executions_recorded"`
	// IdempotencyKeys is how many keys are held in memory.
	IdempotencyKeys int `json:"idempotency_keys"`
	// OutageUntil is the end of the current outage, if any.
	OutageUntil *time.Time `json:"outage_until,omitempty"`
}

// meter keeps the JSON counters and the Prometheus metrics in step.
type meter struct {
	calls, batches, executed, declined, replayed, rateLimited, errorsInjected, dropped,
	outage, keyReuse, badRequests, clientGone, lookups atomic.Int64

	promCalls      *prometheus.CounterVec
	promExecutions *prometheus.CounterVec
	promDropped    *prometheus.CounterVec
	promDuration   *prometheus.HistogramVec
}

func newMeter(reg prometheus.Registerer) *meter {
	m := &meter{
		promCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sim_calls_total",
			Help: "Processor API calls by API and result.",
		}, []string{"api", "result"}),
		promExecutions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sim_executions_total",
			Help: "Payments executed (money moved) by API.",
		}, []string{"api"}),
		promDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sim_responses_dropped_total",
			Help: "Payment calls whose connection was closed instead of answered.",
		}, []string{"api"}),
		promDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sim_call_duration_seconds",
			Help:    "Time to handle a payment call, injected latency included.",
			Buckets: []float64{.005, .01, .025, .05, .075, .1, .15, .25, .5, 1, 2.5, 5, 10},
		}, []string{"api"}),
	}
	reg.MustRegister(m.promCalls, m.promExecutions, m.promDropped, m.promDuration)
	return m
}

// The result label values of sim_calls_total.
const (
	resultSucceeded     = "succeeded"
	resultDeclined      = "declined"
	resultReplayed      = "replayed"
	resultRateLimited   = "rate_limited"
	resultOutage        = "outage"
	resultErrorInjected = "error_injected"
	resultKeyReuse      = "key_reuse"
	resultBadRequest    = "bad_request"
	resultClientGone    = "client_gone"
	resultInternal      = "internal_error"
	resultFound         = "lookup_found"
	resultNotFound      = "lookup_not_found"
)

// badRequest counts a payment call refused as malformed.
func (m *meter) badRequest(api sim.API, start time.Time) {
	m.calls.Add(1)
	m.badRequests.Add(1)
	m.promCalls.WithLabelValues(string(api), resultBadRequest).Inc()
	m.promDuration.WithLabelValues(string(api)).Observe(time.Since(start).Seconds())
}

// pay counts a payment call that reached the simulator.
func (m *meter) pay(api sim.API, res sim.Result, err error, start time.Time) {
	m.calls.Add(1)
	if res.Executed {
		m.executed.Add(1)
		m.promExecutions.WithLabelValues(string(api)).Inc()
	}
	if res.Settled() && res.Resource.Status == sim.StatusDeclined {
		m.declined.Add(1)
	}
	if res.Replayed {
		m.replayed.Add(1)
	}
	if err == nil && res.DropResponse {
		m.dropped.Add(1)
		m.promDropped.WithLabelValues(string(api)).Inc()
	}
	result := resultOf(res, err)
	switch result {
	case resultRateLimited:
		m.rateLimited.Add(1)
	case resultOutage:
		m.outage.Add(1)
	case resultErrorInjected:
		m.errorsInjected.Add(1)
	case resultKeyReuse:
		m.keyReuse.Add(1)
	case resultClientGone:
		m.clientGone.Add(1)
	}
	m.promCalls.WithLabelValues(string(api), result).Inc()
	m.promDuration.WithLabelValues(string(api)).Observe(time.Since(start).Seconds())
}

// batch counts a POST /v2/payment-batches; its payments count as calls.
func (m *meter) batch() { m.batches.Add(1) }

// lookup counts a GET /v2/payments/{key}.
func (m *meter) lookup(found bool, err error) {
	m.lookups.Add(1)
	result := resultNotFound
	switch {
	case found:
		result = resultFound
	case isOutage(err):
		m.outage.Add(1)
		result = resultOutage
	}
	m.promCalls.WithLabelValues(string(sim.APIProposed), result).Inc()
}

func resultOf(res sim.Result, err error) string {
	var rl *sim.RateLimitError
	switch {
	case err == nil && res.Replayed:
		return resultReplayed
	case err == nil && res.Resource.Status == sim.StatusDeclined:
		return resultDeclined
	case err == nil:
		return resultSucceeded
	case isOutage(err):
		return resultOutage
	case errors.As(err, &rl):
		return resultRateLimited
	case errors.Is(err, sim.ErrInjected):
		return resultErrorInjected
	case errors.Is(err, sim.ErrKeyReuse):
		return resultKeyReuse
	case errors.Is(err, sim.ErrClientGone):
		return resultClientGone
	default:
		return resultInternal
	}
}

func isOutage(err error) bool {
	var o *sim.OutageError
	return errors.As(err, &o)
}

// snapshot returns the counters.
func (m *meter) snapshot() Stats {
	return Stats{
		Calls: m.calls.Load(), Batches: m.batches.Load(), Executed: m.executed.Load(), Declined: m.declined.Load(),
		Replayed: m.replayed.Load(), RateLimited: m.rateLimited.Load(),
		ErrorsInjected: m.errorsInjected.Load(), ResponsesDropped: m.dropped.Load(),
		OutageRejected: m.outage.Load(), KeyReuse: m.keyReuse.Load(),
		BadRequests: m.badRequests.Load(), ClientGone: m.clientGone.Load(), Lookups: m.lookups.Load(),
	}
}
