package consumer

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/finsvc/finance/pkg/dlq"
	"github.com/finsvc/finance/pkg/kafka"
	"github.com/finsvc/finance/pkg/verify"
	financev1 "github.com/finsvc/finance/proto/finance/v1"
)

// conflictRow is an outcome_conflicts row as the tests check it.
type conflictRow struct {
	PaymentID       int64
	Status, Outcome string
	Reason, Actor   string
	Resolved        bool
}

func (h *harness) conflicts(t *testing.T) []conflictRow {
	t.Helper()
	rows, err := h.pool.Query(context.Background(), `
		SELECT payment_id, status, outcome, reason, actor, resolved_at IS NOT NULL
		FROM outcome_conflicts ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	var (
		out []conflictRow
		r   conflictRow
	)
	if _, err := pgx.ForEachRow(rows, []any{&r.PaymentID, &r.Status, &r.Outcome, &r.Reason, &r.Actor, &r.Resolved}, func() error {
		out = append(out, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestConsumerDeadLettersConflicts: succeeded after failed and failed after
// succeeded change nothing in the ledger, are dead-lettered (reason
// conflict), counted and recorded, and verify fails on them until they are
// resolved; a late processing or unknown stays a harmless no-op, and the
// partition keeps flowing.
func TestConsumerDeadLettersConflicts(t *testing.T) {
	t.Parallel()
	c, h := setup(t)
	h.seed(t, fixture{100000, 7, -3000}, fixture{100001, 7, -1000}, fixture{100002, 7, -500})
	sent := h.send(t,
		outcome(100000, 7, failed, "declined"),
		outcome(100001, 7, succeeded, ""),
		outcome(100000, 7, succeeded, ""),           // conflict: the processor paid, the ledger failed
		outcome(100001, 7, failed, "declined late"), // conflict: the ledger settled, the processor declined
		outcome(100000, 7, unknown, "timed out"),    // late, harmless
		outcome(100001, 7, processing, ""),          // late, harmless
		outcome(100000, 7, succeeded, "replayed"),   // the same conflict again
		outcome(100002, 7, succeeded, ""),           // fine, after all of them
	)

	ev := h.events(t, 3)
	if diff := cmp.Diff([]*financev1.PaymentEvent{
		event(100000, 7, -3000, "failed", "declined", startBal, 1500, 4),
		event(100001, 7, -1000, "succeeded", "", 9000, 500, 5),
		event(100002, 7, -500, "succeeded", "", 8500, 0, 6),
	}, ev, protocmp.Transform(), protocmp.IgnoreFields(&financev1.PaymentEvent{}, "occurred_at")); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}

	// The ledger shows the first final status, untouched.
	if diff := cmp.Diff(map[int64]paymentState{
		100000: {Status: "failed", FailureReason: "declined"},
		100001: {Status: "succeeded", Entries: 1},
		100002: {Status: "succeeded", Entries: 1},
	}, h.payments(t)); diff != "" {
		t.Errorf("payments (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[int64]walletState{7: {8500, 0, 6}}, h.wallets(t)); diff != "" {
		t.Errorf("wallets (-want +got):\n%s", diff)
	}
	tr := h.transitions(t)
	if diff := cmp.Diff(map[int64][]transition{
		100000: {acceptedAt(1), {4, "accepted", "failed", Actor, "declined"}},
		100001: {acceptedAt(2), {5, "accepted", "succeeded", Actor, ""}},
	}, map[int64][]transition{100000: tr[100000], 100001: tr[100001]}); diff != "" {
		t.Errorf("transitions (-want +got):\n%s", diff)
	}

	var want []letter
	for _, i := range []int{2, 3, 6} {
		o := sent[i]
		want = append(want, letter{
			Key: string(o.Key), Value: string(o.Value),
			Reason: rejectConflict, Source: Group,
			OriginalTopic: kafka.TopicOutcomes, OriginalPartition: o.Partition, OriginalOffset: o.Offset,
			Attempts: 1, PaymentID: map[int]int64{2: 100000, 3: 100001, 6: 100000}[i], UserID: 7,
			HasError: true, HasFirstSeen: true, DeadLetteredAfterFirstSeenOK: true,
		})
	}
	recs := h.dlqRecords(t, len(want))
	var got []letter
	for _, r := range recs {
		got = append(got, letterOf(t, r))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("dead letters (-want +got):\n%s", diff)
	}
	for _, x := range recs[0].Headers {
		if x.Key == dlq.HeaderError && !strings.Contains(string(x.Value), "contradicts payment 100000's final status failed") {
			t.Errorf("dlq-error = %q, want the contradiction named", x.Value)
		}
	}

	for _, m := range []struct {
		from, to string
		want     float64
	}{{"failed", "succeeded", 2}, {"succeeded", "failed", 1}} {
		if n := testutil.ToFloat64(c.m.conflicts.WithLabelValues(m.from, m.to)); n != m.want {
			t.Errorf("conflicts{from=%s,to=%s} = %v, want %v", m.from, m.to, n, m.want)
		}
	}
	if n := testutil.ToFloat64(c.m.rejected.WithLabelValues(rejectConflict)); n != 3 {
		t.Errorf("rejected{reason=conflict} = %v, want 3", n)
	}
	if n := testutil.ToFloat64(c.m.noops.WithLabelValues("out_of_order")); n != 2 {
		t.Errorf("noops{reason=out_of_order} = %v, want 2 (the late unknown and processing)", n)
	}

	// Recorded once per payment and outcome, the replayed copy included.
	if diff := cmp.Diff([]conflictRow{
		{100000, "failed", "succeeded", "", Actor, false},
		{100001, "succeeded", "failed", "declined late", Actor, false},
	}, h.conflicts(t)); diff != "" {
		t.Errorf("outcome_conflicts (-want +got):\n%s", diff)
	}

	// verify fails on them until they are resolved. (The harness's wallets
	// start with a balance but no seed entry, so balance_mismatch is
	// reported too; it is not the point here.)
	check := func() verify.Report {
		t.Helper()
		rep, err := verify.New(h.pool, nil, verify.DefaultConfig()).Check(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	rep := check()
	if rep.OK() || rep.Count(verify.OutcomeConflict) != 2 {
		var b strings.Builder
		_ = rep.WriteText(&b)
		t.Errorf("verify after two conflicts: want 2 outcome_conflict violations\n%s", b.String())
	}
	if _, err := h.pool.Exec(context.Background(), `
		UPDATE outcome_conflicts SET resolved_at = now(), resolved_by = 'cli:alice',
		       resolution = 'statement: executed as pay_1; refunded at the processor'
		WHERE payment_id = 100000`); err != nil {
		t.Fatal(err)
	}
	if n := check().Count(verify.OutcomeConflict); n != 1 {
		t.Errorf("verify after resolving one: %d outcome_conflict, want 1", n)
	}
}
