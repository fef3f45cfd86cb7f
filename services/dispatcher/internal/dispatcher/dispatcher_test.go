package dispatcher

import (
	"testing"

	"github.com/finsvc/finance/pkg/payment"
	financev1 "github.com/finsvc/finance/proto/finance/v1"
)

func TestOutcomeStatus(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   payment.Status
		want financev1.OutcomeStatus
	}{
		{payment.StatusSucceeded, financev1.OutcomeStatus_OUTCOME_STATUS_SUCCEEDED},
		{payment.StatusFailed, financev1.OutcomeStatus_OUTCOME_STATUS_FAILED},
		{payment.StatusUnknown, financev1.OutcomeStatus_OUTCOME_STATUS_UNKNOWN},
	}
	for _, tt := range tests {
		if got := outcomeStatus(tt.in); got != tt.want {
			t.Errorf("outcomeStatus(%s) = %v, want %v", tt.in, got, tt.want)
		}
	}
}
