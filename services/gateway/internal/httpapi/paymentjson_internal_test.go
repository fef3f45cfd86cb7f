package httpapi

import (
	"testing"
	"time"

	"github.com/finsvc/finance/services/gateway/internal/store"
)

// created_at and updated_at keep their sub-second part: the load test
// measures from updated_at how long a final status took to become visible.
func TestPaymentJSONTimesKeepMicroseconds(t *testing.T) {
	at := time.Date(2026, 12, 5, 20, 30, 1, 123456000, time.UTC)
	got := toPaymentJSON(store.Payment{CreatedAt: at.Add(-time.Second), UpdatedAt: at})
	if got.UpdatedAt != "2026-12-05T20:30:01.123456Z" {
		t.Errorf("updated_at = %q, want 2026-12-05T20:30:01.123456Z", got.UpdatedAt)
	}
	if got.CreatedAt != "2026-12-05T20:30:00.123456Z" {
		t.Errorf("created_at = %q, want 2026-12-05T20:30:00.123456Z", got.CreatedAt)
	}
}
