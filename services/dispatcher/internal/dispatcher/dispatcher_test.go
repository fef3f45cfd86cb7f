package dispatcher

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/finsvc/finance/pkg/payment"
	financev1 "github.com/finsvc/finance/proto/finance/v1"
)

func TestByKeyKeepsOrderWithinEachKey(t *testing.T) {
	t.Parallel()
	rec := func(key string, p int32, off int64) *kgo.Record {
		return &kgo.Record{Key: []byte(key), Partition: p, Offset: off}
	}
	// Two partitions polled together; users 1 and 3 share partition 0.
	recs := []*kgo.Record{rec("1", 0, 10), rec("3", 0, 11), rec("1", 0, 12), rec("2", 1, 5), rec("3", 0, 13), rec("2", 1, 6), rec("1", 0, 14)}
	type pos struct {
		Key    string
		Offset int64
	}
	var got [][]pos
	for _, chain := range byKey(recs) {
		var c []pos
		for _, r := range chain {
			c = append(c, pos{string(r.Key), r.Offset})
		}
		got = append(got, c)
	}
	want := [][]pos{
		{{"1", 10}, {"1", 12}, {"1", 14}},
		{{"3", 11}, {"3", 13}},
		{{"2", 5}, {"2", 6}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("chains (-want +got):\n%s", diff)
	}
}

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
