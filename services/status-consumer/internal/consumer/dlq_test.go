package consumer

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/finsvc/finance/pkg/dlq"
	"github.com/finsvc/finance/pkg/kafka"
	"github.com/finsvc/finance/pkg/testkit"
	financev1 "github.com/finsvc/finance/proto/finance/v1"
)

// letter is what the tests check of a dead letter.
type letter struct {
	Key, Value                   string
	Reason, Source               string
	OriginalTopic                string
	OriginalPartition            int32
	OriginalOffset               int64
	Attempts                     int
	PaymentID, UserID            int64
	HasError, HasFirstSeen       bool
	DeadLetteredAfterFirstSeenOK bool
}

func letterOf(t *testing.T, r *kgo.Record) letter {
	t.Helper()
	h := map[string]string{}
	for _, x := range r.Headers {
		h[x.Key] = string(x.Value)
	}
	atoi := func(k string) int64 {
		if h[k] == "" {
			return 0
		}
		n, err := strconv.ParseInt(h[k], 10, 64)
		if err != nil {
			t.Errorf("header %s = %q: %v", k, h[k], err)
		}
		return n
	}
	first, err := time.Parse(time.RFC3339Nano, h[dlq.HeaderFirstSeen])
	return letter{
		Key: string(r.Key), Value: string(r.Value),
		Reason: h[dlq.HeaderReason], Source: h[dlq.HeaderSource],
		OriginalTopic:     h[dlq.HeaderOriginalTopic],
		OriginalPartition: int32(atoi(dlq.HeaderOriginalPartition)),
		OriginalOffset:    atoi(dlq.HeaderOriginalOffset),
		Attempts:          int(atoi(dlq.HeaderAttempts)),
		PaymentID:         atoi(dlq.HeaderPaymentID),
		UserID:            atoi(dlq.HeaderUserID),
		HasError:          h[dlq.HeaderError] != "",
		HasFirstSeen:      err == nil && !first.IsZero(),
		// The record was dead-lettered after it was first seen.
		DeadLetteredAfterFirstSeenOK: err == nil && !r.Timestamp.Before(first.Truncate(time.Millisecond)),
	}
}

// dlqRecords reads the next n records of payments.outcomes.dlq.
func (h *harness) dlqRecords(t *testing.T, n int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(h.cluster.Brokers()...), kgo.ConsumeTopics(kafka.DLQTopic(kafka.TopicOutcomes)),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), testkit.DefaultWait)
	defer cancel()
	var got []*kgo.Record
	for len(got) < n {
		fs := cl.PollRecords(ctx, n-len(got))
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d dead letters before the deadline", len(got), n)
		}
		got = append(got, fs.Records()...)
	}
	return got
}

func TestConsumerDeadLettersPoisonRecords(t *testing.T) {
	t.Parallel()
	c, h := setup(t)
	h.seed(t, fixture{100000, 7, -3000})
	// A payment the gateway would never have accepted: a debit beyond the
	// balance with no hold. Settling it violates the wallet's check.
	h.seed(t, fixture{100001, 7, 1})
	if _, err := h.pool.Exec(context.Background(), `UPDATE payments SET amount = -50000 WHERE id = 100001`); err != nil {
		t.Fatal(err)
	}
	// Payment 100000's id under another uid: an outcome made for another
	// database (ids repeat after a restore); and one without a uid.
	otherDatabase := outcome(100000, 7, succeeded, "")
	otherDatabase.outcome.PaymentUid = uuid.NewString()
	noUID := outcome(100000, 7, succeeded, "")
	noUID.outcome.PaymentUid = ""
	sent := h.send(t,
		input{raw: []byte("not a protobuf"), key: 7},
		otherDatabase,
		noUID,
		outcome(424242, 7, succeeded, ""), // no such payment
		outcome(100000, 7, financev1.OutcomeStatus_OUTCOME_STATUS_UNSPECIFIED, ""), // no status
		withKey(7, outcome(100000, 8, succeeded, "")),                              // someone else's payment
		outcome(100001, 7, succeeded, ""),                                          // constraint violation
		outcome(100000, 7, succeeded, ""),                                          // fine, after all of them
	)

	// The partition kept flowing: the last outcome was applied and emitted,
	// after the payment whose outcome broke a constraint was marked unknown.
	ev := h.events(t, 2)
	unknownReason := ev[0].GetReason()
	if diff := cmp.Diff([]*financev1.PaymentEvent{
		event(100001, 7, -50000, "unknown", unknownReason, startBal, 3000, 3),
		event(100000, 7, -3000, "succeeded", "", 7000, 0, 4),
	}, ev,
		protocmp.Transform(), protocmp.IgnoreFields(&financev1.PaymentEvent{}, "occurred_at")); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}

	var want []letter
	for i, w := range []struct {
		reason            string
		paymentID, userID int64
	}{
		{rejectUndecodable, 0, 0},
		{rejectStale, 100000, 7},
		{rejectStale, 100000, 7},
		{rejectUnknownPayment, 424242, 7},
		{rejectInvalid, 100000, 7},
		{rejectUserMismatch, 100000, 8},
		{rejectConstraint, 100001, 7},
	} {
		want = append(want, letter{
			Key: string(sent[i].Key), Value: string(sent[i].Value),
			Reason: w.reason, Source: Group,
			OriginalTopic: kafka.TopicOutcomes, OriginalPartition: sent[i].Partition, OriginalOffset: sent[i].Offset,
			Attempts: 1, PaymentID: w.paymentID, UserID: w.userID,
			HasError: true, HasFirstSeen: true, DeadLetteredAfterFirstSeenOK: true,
		})
	}
	var got []letter
	for _, r := range h.dlqRecords(t, len(want)) {
		got = append(got, letterOf(t, r))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("dead letters (-want +got):\n%s", diff)
	}
	perReason := map[string]float64{}
	for _, l := range want {
		perReason[l.Reason]++
	}
	for reason, wantN := range perReason {
		if n := testutil.ToFloat64(c.m.rejected.WithLabelValues(reason)); n != wantN {
			t.Errorf("rejected{reason=%q} = %v, want %v", reason, n, wantN)
		}
	}
	if diff := cmp.Diff(map[int64]paymentState{
		100000: {Status: "succeeded", Entries: 1},
		100001: {Status: "unknown", FailureReason: unknownReason},
	}, h.payments(t)); diff != "" {
		t.Errorf("payments (-want +got):\n%s", diff)
	}
	// The payment was marked unknown by the consumer, audited as such.
	if diff := cmp.Diff([]transition{acceptedAt(2), {3, "accepted", "unknown", Actor, unknownReason}},
		h.transitions(t)[100001]); diff != "" {
		t.Errorf("transitions of payment 100001 (-want +got):\n%s", diff)
	}
	if !strings.Contains(unknownReason, "outcome succeeded dead-lettered") || !strings.Contains(unknownReason, "wallets_available_not_negative") {
		t.Errorf("unknown reason = %q, want the dead-lettered outcome and the violated constraint", unknownReason)
	}

	// Everything was committed: a consumer started now reads nothing again.
	h.stop(t, c)
	second := h.start(t)
	h.send(t, outcome(100000, 7, succeeded, ""))
	h.events(t, 1)
	for _, l := range want {
		if n := testutil.ToFloat64(second.m.rejected.WithLabelValues(l.Reason)); n != 0 {
			t.Errorf("after restart, rejected{reason=%q} = %v, want 0 (committed)", l.Reason, n)
		}
	}
}

func TestConsumerCommitsADeadLetterOnlyOnceKafkaHasIt(t *testing.T) {
	t.Parallel()
	c, h := setup(t, retryFor(300*time.Millisecond))
	h.seed(t, fixture{100000, 7, -3000})
	fault := h.refuseProduce(kafka.DLQTopic(kafka.TopicOutcomes))
	h.send(t, outcome(424242, 7, succeeded, ""), outcome(100000, 7, succeeded, ""))

	testkit.Eventually(t, "the dead letter to be deferred", func() bool {
		return testutil.ToFloat64(c.m.deferred.WithLabelValues("dlq")) >= 1
	})
	// The poison record holds its place: nothing after it was applied.
	if got := testutil.ToFloat64(c.m.applied.WithLabelValues("succeeded")); got != 0 {
		t.Errorf("applied{status=succeeded} = %v while the dead letter is refused, want 0", got)
	}
	fault.Remove()

	h.events(t, 1)
	recs := h.dlqRecords(t, 1)
	if l := letterOf(t, recs[0]); l.PaymentID != 424242 || l.Reason != rejectUnknownPayment {
		t.Errorf("dead letter = %+v, want payment 424242, %s", l, rejectUnknownPayment)
	}
	if got := testutil.ToFloat64(c.m.rejected.WithLabelValues(rejectUnknownPayment)); got != 1 {
		t.Errorf("rejected{reason=unknown_payment} = %v, want 1", got)
	}
	if got := testutil.ToFloat64(c.m.errors.WithLabelValues("dlq")); got < 1 {
		t.Errorf("errors{stage=dlq} = %v, want at least 1", got)
	}
}

// TestReplayedDeadLetterAppliesOnceFixed: an outcome that arrived before its
// payment existed is dead-lettered; once the payment is there, a replay
// applies it, and a forced second replay changes nothing (idempotent).
func TestReplayedDeadLetterAppliesOnceFixed(t *testing.T) {
	t.Parallel()
	c, h := setup(t)
	h.send(t, outcome(100000, 7, succeeded, ""))
	h.dlqRecords(t, 1)
	testkit.Eventually(t, "the dead letter to be counted", func() bool {
		return testutil.ToFloat64(c.m.rejected.WithLabelValues(rejectUnknownPayment)) == 1
	})
	h.seed(t, fixture{100000, 7, -3000})

	op, err := dlq.NewOperator(h.cluster.Brokers(), h.pool, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer op.Close()
	ctx, cancel := context.WithTimeout(context.Background(), testkit.DefaultWait)
	defer cancel()
	res, err := op.Replay(ctx, dlq.ReplayRequest{Filter: dlq.Filter{PaymentID: 100000}, Actor: "test", Rate: 100})
	if err != nil || res.Replayed != 1 {
		t.Fatalf("replay = %+v, %v; want one replayed", res, err)
	}
	want := event(100000, 7, -3000, "succeeded", "", 7000, 0, 2)
	got := h.events(t, 1)
	if diff := cmp.Diff([]*financev1.PaymentEvent{want}, got, protocmp.Transform(),
		protocmp.IgnoreFields(&financev1.PaymentEvent{}, "occurred_at")); diff != "" {
		t.Errorf("events after the replay (-want +got):\n%s", diff)
	}

	res, err = op.Replay(ctx, dlq.ReplayRequest{Filter: dlq.Filter{PaymentID: 100000}, Actor: "test", Rate: 100, Force: true})
	if err != nil || res.Replayed != 1 {
		t.Fatalf("forced replay = %+v, %v; want one replayed", res, err)
	}
	// The same event again (same id and sequence), and nothing moved.
	got = h.events(t, 1)
	if diff := cmp.Diff([]*financev1.PaymentEvent{want}, got, protocmp.Transform(),
		protocmp.IgnoreFields(&financev1.PaymentEvent{}, "occurred_at")); diff != "" {
		t.Errorf("events after the forced replay (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[int64]walletState{7: {7000, 0, 2}}, h.wallets(t)); diff != "" {
		t.Errorf("wallets (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[int64]paymentState{100000: {Status: "succeeded", Entries: 1}}, h.payments(t)); diff != "" {
		t.Errorf("payments (-want +got):\n%s", diff)
	}
}

// TestConsumerDeadLettersRecurringDataErrors: a data exception or an
// integrity constraint violation other than a CHECK or foreign key (SQLSTATE
// classes 22 and 23) that comes back on every attempt dead-letters the
// outcome and marks the payment unknown, instead of deferring the record
// for ever: the partition keeps flowing.
func TestConsumerDeadLettersRecurringDataErrors(t *testing.T) {
	t.Parallel()
	const nearMax = 9223372036854775000 // a credit of 1000 overflows bigint
	tests := []struct {
		name       string
		setup      string
		balance    int64 // the wallet's balance once set up
		wantReason string
		wantCode   string
	}{
		{
			name:       "bigint out of range on the balance (22003)",
			setup:      `UPDATE wallets SET balance = 9223372036854775000 WHERE user_id = 7`,
			balance:    nearMax,
			wantReason: rejectDataException,
			wantCode:   "22003",
		},
		{
			name: "a unique violation raised by a trigger for one payment (23505)",
			setup: `
				CREATE FUNCTION refuse_entry() RETURNS trigger LANGUAGE plpgsql AS $$
				BEGIN
					RAISE EXCEPTION 'entry of payment % refused', NEW.payment_id USING ERRCODE = 'unique_violation';
				END $$;
				CREATE TRIGGER refuse_entry BEFORE INSERT ON entries
					FOR EACH ROW WHEN (NEW.payment_id = 100000) EXECUTE FUNCTION refuse_entry();`,
			balance:    startBal,
			wantReason: rejectConstraint,
			wantCode:   "23505",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, h := setup(t)
			// 100000 is a credit (no hold): its succeeded outcome is refused.
			h.seed(t, fixture{100000, 7, 1000}, fixture{100001, 7, -3000})
			if _, err := h.pool.Exec(context.Background(), tt.setup); err != nil {
				t.Fatal(err)
			}
			sent := h.send(t, outcome(100000, 7, succeeded, ""), outcome(100001, 7, succeeded, ""))

			ev := h.events(t, 2)
			unknownReason := ev[0].GetReason()
			if diff := cmp.Diff([]*financev1.PaymentEvent{
				event(100000, 7, 1000, "unknown", unknownReason, tt.balance, 3000, 3),
				event(100001, 7, -3000, "succeeded", "", tt.balance-3000, 0, 4),
			}, ev, protocmp.Transform(), protocmp.IgnoreFields(&financev1.PaymentEvent{}, "occurred_at")); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
			if !strings.Contains(unknownReason, "outcome succeeded dead-lettered") || !strings.Contains(unknownReason, tt.wantCode) {
				t.Errorf("unknown reason = %q, want the dead-lettered outcome and SQLSTATE %s", unknownReason, tt.wantCode)
			}
			if diff := cmp.Diff(map[int64]paymentState{
				100000: {Status: "unknown", FailureReason: unknownReason},
				100001: {Status: "succeeded", Entries: 1},
			}, h.payments(t)); diff != "" {
				t.Errorf("payments (-want +got):\n%s", diff)
			}

			want := []letter{{
				Key: string(sent[0].Key), Value: string(sent[0].Value),
				Reason: tt.wantReason, Source: Group,
				OriginalTopic: kafka.TopicOutcomes, OriginalPartition: sent[0].Partition, OriginalOffset: sent[0].Offset,
				Attempts: recurAttempts, PaymentID: 100000, UserID: 7,
				HasError: true, HasFirstSeen: true, DeadLetteredAfterFirstSeenOK: true,
			}}
			var got []letter
			for _, r := range h.dlqRecords(t, 1) {
				got = append(got, letterOf(t, r))
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("dead letters (-want +got):\n%s", diff)
			}
			if n := testutil.ToFloat64(c.m.rejected.WithLabelValues(tt.wantReason)); n != 1 {
				t.Errorf("rejected{reason=%q} = %v, want 1", tt.wantReason, n)
			}
			if n := testutil.ToFloat64(c.m.deferred.WithLabelValues("apply")); n != 0 {
				t.Errorf("deferred{stage=apply} = %v, want 0: the record was never given up on", n)
			}
		})
	}
}
