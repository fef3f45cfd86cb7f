package consumer

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	financev1 "github.com/finsvc/finance/proto/finance/v1"
)

// batches returns how many batch transactions committed and how many
// outcomes they applied.
func batches(t *testing.T, c *Consumer) (n uint64, outcomes float64) {
	t.Helper()
	var m dto.Metric
	if err := c.m.batchSize.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
}

// TestConsumerAppliesAPollInOneTransaction: outcomes already waiting when
// the consumer starts, over 4 partitions, are applied by a handful of
// batch transactions, not one transaction each, and every one is applied
// and emitted as on its own.
func TestConsumerAppliesAPollInOneTransaction(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	const users = 40
	var inputs []input
	for u := int64(1); u <= users; u++ {
		h.seed(t, fixture{100000 + u, u, -1000})
		inputs = append(inputs, outcome(100000+u, u, processing, ""), outcome(100000+u, u, succeeded, ""))
	}
	h.send(t, inputs...)
	c := h.start(t)

	got := map[int64][]string{}
	for _, ev := range h.events(t, len(inputs)) {
		got[ev.GetUserId()] = append(got[ev.GetUserId()], ev.GetStatus())
	}
	for u := int64(1); u <= users; u++ {
		if diff := cmp.Diff([]string{"processing", "succeeded"}, got[u]); diff != "" {
			t.Errorf("events of user %d (-want +got):\n%s", u, diff)
		}
	}
	for id, p := range h.payments(t) {
		if p.Status != "succeeded" || p.Entries != 1 || p.Hold != 0 {
			t.Errorf("payment %d = %+v, want succeeded with its entry", id, p)
		}
	}
	for u, w := range h.wallets(t) {
		if w != (walletState{Balance: startBal - 1000, Held: 0, EventSeq: 3}) {
			t.Errorf("wallet %d = %+v, want balance %d, nothing held, 3 events", u, w, startBal-1000)
		}
	}
	n, outcomes := batches(t, c)
	if outcomes != float64(len(inputs)) {
		t.Errorf("batches applied %v outcomes, want %d", outcomes, len(inputs))
	}
	// MaxPollRecords is 100: at least one poll held many; one transaction per
	// outcome would be 80.
	if n > 10 {
		t.Errorf("%d batch transactions for %d outcomes waiting at start, want a handful", n, len(inputs))
	}
}

// TestConsumerGathersTricklingOutcomes: outcomes that arrive one at a time,
// 20 ms apart, with a BatchWait of 2 s, are gathered by the poll that got the
// first and applied in one transaction, across partitions; the same outcomes
// with no BatchWait take one transaction each. (The broker answers a fetch as
// soon as an outcome is readable: the gathering is the consumer's.)
func TestConsumerGathersTricklingOutcomes(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name      string
		wait      time.Duration
		wantBatch func(n uint64) bool
		want      string
	}{
		{"batch wait 2s", 2 * time.Second, func(n uint64) bool { return n == 1 }, "1"},
		{"no batch wait", 0, func(n uint64) bool { return n >= 8 }, "at least 8 of 10"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, func(cfg *Config) { cfg.BatchWait = tt.wait })
			const users = 10
			for u := int64(1); u <= users; u++ {
				h.seed(t, fixture{100000 + u, u, -1000})
			}
			c := h.start(t)
			for u := int64(1); u <= users; u++ {
				h.send(t, outcome(100000+u, u, succeeded, ""))
				time.Sleep(20 * time.Millisecond)
			}
			h.events(t, users)
			n, outcomes := batches(t, c)
			if outcomes != users || !tt.wantBatch(n) {
				t.Errorf("%d batch transactions applied %v outcomes, want %s transaction(s) for %d", n, outcomes, tt.want, users)
			}
		})
	}
}

// TestConsumerBatchDeadLettersPoisonAlone: one poll holding good outcomes
// and every kind of record that can never apply. Each bad record goes alone
// to the DLQ with its reason; its batch-mates, on its partition and on
// others, are applied and emitted in that same poll (nothing deferred), and
// all of it is committed.
func TestConsumerBatchDeadLettersPoisonAlone(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		// refused adds an outcome PostgreSQL refuses (a CHECK violation),
		// which fails the batch's transaction: the poll is then applied
		// record by record, and still nothing good is lost or deferred.
		refused bool
	}{
		{name: "the batch transaction commits"},
		{name: "PostgreSQL refuses one outcome", refused: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			h.seed(t, fixture{100001, 1, -1000}, fixture{100002, 2, -1000}, fixture{100003, 3, -1000}, fixture{100004, 3, 1})
			if _, err := h.pool.Exec(context.Background(), `UPDATE payments SET amount = -50000 WHERE id = 100004`); err != nil {
				t.Fatal(err)
			}
			stale := outcome(100002, 2, succeeded, "")
			stale.outcome.PaymentUid = uuid.NewString()
			inputs := []input{
				outcome(100001, 1, processing, ""),
				input{raw: []byte("not a protobuf"), key: 1},
				outcome(100002, 2, processing, ""),
				withKey(2, outcome(100003, 2, succeeded, "")), // user 3's payment
				outcome(424242, 3, succeeded, ""),             // no such payment
				stale,
				outcome(100003, 3, failed, "declined"),
				outcome(100003, 3, financev1.OutcomeStatus_OUTCOME_STATUS_UNSPECIFIED, ""),
			}
			wantReasons := map[string]float64{rejectUndecodable: 1, rejectUserMismatch: 1, rejectUnknownPayment: 1,
				rejectStale: 1, rejectInvalid: 1}
			wantEvents := 3
			if tt.refused {
				inputs = append(inputs, outcome(100004, 3, succeeded, ""))
				wantReasons[rejectConstraint] = 1
				wantEvents++ // 100004 marked unknown
			}
			inputs = append(inputs, outcome(100001, 1, succeeded, ""), outcome(100002, 2, failed, "declined"))
			wantEvents += 2
			h.send(t, inputs...)
			c := h.start(t)

			h.events(t, wantEvents)
			var letters float64
			for _, n := range wantReasons {
				letters += n
			}
			got := map[string]float64{}
			for _, r := range h.dlqRecords(t, int(letters)) {
				got[letterOf(t, r).Reason]++
			}
			if diff := cmp.Diff(wantReasons, got); diff != "" {
				t.Errorf("dead letters per reason (-want +got):\n%s", diff)
			}
			wantPayments := map[int64]paymentState{
				100001: {Status: "succeeded", Entries: 1},
				100002: {Status: "failed", FailureReason: "declined"},
				100003: {Status: "failed", FailureReason: "declined"},
				100004: {Status: "accepted"},
			}
			payments := h.payments(t)
			if tt.refused {
				wantPayments[100004] = paymentState{Status: "unknown", FailureReason: payments[100004].FailureReason}
			}
			if diff := cmp.Diff(wantPayments, payments); diff != "" {
				t.Errorf("payments (-want +got):\n%s", diff)
			}
			for _, stage := range []string{"apply", "emit", "dlq"} {
				if n := testutil.ToFloat64(c.m.deferred.WithLabelValues(stage)); n != 0 {
					t.Errorf("deferred{stage=%s} = %v, want 0: nothing waits for a later poll", stage, n)
				}
			}

			// All of it was committed: a consumer started now reads nothing again.
			h.stop(t, c)
			second := h.start(t)
			h.send(t, outcome(100001, 1, succeeded, ""))
			h.events(t, 1)
			if _, outcomes := batches(t, second); outcomes != 1 {
				t.Errorf("the second consumer applied %v outcomes, want only the new one", outcomes)
			}
		})
	}
}
