package consumer

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/finsvc/finance/pkg/ledger"
	"github.com/finsvc/finance/pkg/payment"
)

// BenchmarkObserveFinal is the CPU of the SLO histogram per payment: one
// observation when its outcome makes it final. docs/operations.md reports
// it:
//
//	go test -run '^$' -bench ObserveFinal -benchmem ./services/status-consumer/internal/consumer/
func BenchmarkObserveFinal(b *testing.B) {
	m := newMetrics(prometheus.NewRegistry())
	ev := &ledger.Event{PaymentUID: payment.NewUID(), OccurredAt: time.Now().Add(300 * time.Millisecond)}
	b.ReportAllocs()
	for b.Loop() {
		m.observeFinal(payment.StatusSucceeded, ev)
	}
}
