package consumer

import (
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/finsvc/finance/pkg/ledger"
	"github.com/finsvc/finance/pkg/payment"
)

// TestObserveFinal: an outcome that makes a payment final is observed once
// in status_consumer_payment_time_to_final_seconds, at the time since the
// acceptance its UUIDv7 uid carries; non-final changes and uids without a
// time are not.
func TestObserveFinal(t *testing.T) {
	t.Parallel()
	m := newMetrics(prometheus.NewRegistry())
	uid := payment.NewUID()
	sec, nsec := uid.Time().UnixTime()
	accepted := time.Unix(sec, nsec)
	ev := func(u uuid.UUID, after time.Duration) *ledger.Event {
		return &ledger.Event{PaymentUID: u, OccurredAt: accepted.Add(after)}
	}
	m.observeFinal(payment.StatusSucceeded, ev(uid, 3*time.Second))
	m.observeFinal(payment.StatusFailed, ev(uid, 45*time.Second))
	m.observeFinal(payment.StatusProcessing, ev(uid, time.Second))       // not final
	m.observeFinal(payment.StatusUnknown, ev(uid, time.Second))          // not final
	m.observeFinal(payment.StatusSucceeded, ev(uuid.New(), time.Second)) // v4: no time
	m.observeFinal(payment.StatusSucceeded, nil)                         // no event
	m.observeFinal(payment.StatusSucceeded, ev(uid, -2*time.Second))     // skew: counts as 0

	if got := testutil.CollectAndCount(m.timeToFinal); got != 2 {
		t.Errorf("series = %d, want 2 (succeeded, failed)", got)
	}
	for _, tc := range []struct {
		status     payment.Status
		count      uint64
		sum        float64
		le10Within uint64
	}{
		{payment.StatusSucceeded, 2, 3, 2},
		{payment.StatusFailed, 1, 45, 0},
	} {
		h := &dtoHistogram{}
		h.read(t, m.timeToFinal.WithLabelValues(string(tc.status)).(prometheus.Histogram))
		if h.count != tc.count || h.sum != tc.sum || h.le10 != tc.le10Within {
			t.Errorf("%s: count %d sum %v le=10 %d, want %d %v %d", tc.status, h.count, h.sum, h.le10, tc.count, tc.sum, tc.le10Within)
		}
	}
}

// dtoHistogram is what TestObserveFinal reads of one histogram.
type dtoHistogram struct {
	count, le10 uint64
	sum         float64
}

func (h *dtoHistogram) read(t *testing.T, c prometheus.Histogram) {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	h.count, h.sum = m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
	for _, b := range m.GetHistogram().GetBucket() {
		if b.GetUpperBound() == 10 {
			h.le10 = b.GetCumulativeCount()
		}
	}
}
