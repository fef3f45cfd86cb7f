package cli

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/finsvc/finance/pkg/payment"
	"github.com/finsvc/finance/pkg/reconcile"
)

// openStatuses are the non-final statuses, each a label value of
// finance_nonfinal_payments (0 when none is in it).
var openStatuses = []payment.Status{payment.StatusAccepted, payment.StatusProcessing, payment.StatusUnknown}

// openPaymentsSQL counts the non-final payments by status, with the age of
// the oldest (since its acceptance). Its WHERE is the predicate of the
// partial index payments_open_idx, so it reads only the open payments.
const openPaymentsSQL = `
SELECT status, count(*), extract(epoch FROM now() - min(created_at))::float8
FROM payments
WHERE status NOT IN ('succeeded', 'failed')
GROUP BY status`

// reconcileMetrics are the metrics financectl reconcile --watch serves on
// --metrics-addr: the liveness of the payments (how many are not final, and
// how long the oldest has waited) and what the reconciler's passes did.
type reconcileMetrics struct {
	nonfinal    *prometheus.GaugeVec
	oldestBy    *prometheus.GaugeVec
	passes      *prometheus.CounterVec
	resolved    *prometheus.CounterVec
	left        prometheus.Gauge
	lost        prometheus.Gauge
	mismatches  prometheus.Gauge
	lastSuccess prometheus.Gauge

	mu sync.Mutex
	// oldestAge is the oldest open payment's age when read at readAt; the
	// age gauge adds the time since, so it keeps growing between passes
	// (and while the database cannot be read) instead of standing still.
	oldestAge time.Duration
	readAt    time.Time
	anyOpen   bool
}

func newReconcileMetrics(reg prometheus.Registerer) *reconcileMetrics {
	m := &reconcileMetrics{
		nonfinal: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "finance_nonfinal_payments",
			Help: "Payments not final (accepted, processing, unknown), by status, as of the reconciler's last pass.",
		}, []string{"status"}),
		oldestBy: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "finance_oldest_payment_age_by_status_seconds",
			Help: "Seconds since the oldest payment in each non-final status (accepted, processing, unknown) was accepted, as of the reconciler's last pass; 0 when none is in it.",
		}, []string{"status"}),
		passes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "finance_reconcile_passes_total",
			Help: "Reconciliation passes, by result (ok, failed).",
		}, []string{"result"}),
		resolved: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "finance_reconcile_resolved_total",
			Help: "Payments the reconciler resolved, by status resolved from (unknown, accepted, processing) and to (succeeded, failed).",
		}, []string{"from", "to"}),
		left: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "finance_reconcile_left_payments",
			Help: "Unknown or stuck payments the last pass examined and left as they were.",
		}),
		lost: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "finance_reconcile_executions_without_payment",
			Help: "The processor's keyed executions whose payment uid the database does not hold (e.g. lost in a restore), at the last pass.",
		}),
		mismatches: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "finance_reconcile_mismatches",
			Help: "Violations of the statement invariants (paid twice, executed but failed, ...) at the last pass.",
		}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "finance_reconcile_last_success_timestamp_seconds",
			Help: "When the last reconciliation pass finished without error (Unix seconds).",
		}),
	}
	age := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "finance_oldest_nonfinal_payment_age_seconds",
		Help: "Seconds since the oldest payment that is not final was accepted; 0 when every payment is final.",
	}, m.oldestAgeSeconds)
	reg.MustRegister(m.nonfinal, m.oldestBy, m.passes, m.resolved, m.left, m.lost, m.mismatches, m.lastSuccess, age)
	for _, s := range openStatuses {
		m.nonfinal.WithLabelValues(string(s))
		m.oldestBy.WithLabelValues(string(s))
	}
	for _, r := range []string{"ok", "failed"} {
		m.passes.WithLabelValues(r)
	}
	return m
}

func (m *reconcileMetrics) oldestAgeSeconds() float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.anyOpen {
		return 0
	}
	return (m.oldestAge + time.Since(m.readAt)).Seconds()
}

// pass records a reconciliation pass.
func (m *reconcileMetrics) pass(rep reconcile.Report, err error) {
	if err != nil {
		m.passes.WithLabelValues("failed").Inc()
		return
	}
	m.passes.WithLabelValues("ok").Inc()
	for _, r := range rep.Resolved {
		if r.Applied {
			m.resolved.WithLabelValues(string(r.From), string(r.To)).Inc()
		}
	}
	m.left.Set(float64(rep.Left))
	m.lost.Set(float64(rep.WithoutPaymentCount))
	m.mismatches.Set(float64(rep.MismatchCount()))
	m.lastSuccess.Set(float64(time.Now().UnixNano()) / 1e9)
}

// refreshOpen reads the open payments, in one query on the partial index.
func (m *reconcileMetrics) refreshOpen(ctx context.Context, db *pgxpool.Pool) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	rows, err := db.Query(ctx, openPaymentsSQL)
	if err != nil {
		return fmt.Errorf("count open payments: %w", err)
	}
	counts := map[payment.Status]int64{}
	ages := map[payment.Status]float64{}
	var (
		status  payment.Status
		n       int64
		ageSecs float64
		oldest  float64
	)
	readAt := time.Now()
	if _, err := pgx.ForEachRow(rows, []any{&status, &n, &ageSecs}, func() error {
		counts[status] = n
		ages[status] = ageSecs
		oldest = max(oldest, ageSecs)
		return nil
	}); err != nil {
		return fmt.Errorf("count open payments: %w", err)
	}
	for _, s := range openStatuses {
		m.nonfinal.WithLabelValues(string(s)).Set(float64(counts[s]))
		m.oldestBy.WithLabelValues(string(s)).Set(ages[s])
	}
	m.mu.Lock()
	m.anyOpen = len(counts) > 0
	m.oldestAge = time.Duration(oldest * float64(time.Second))
	m.readAt = readAt
	m.mu.Unlock()
	return nil
}
