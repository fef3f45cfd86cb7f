package dlq_test

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/finsvc/finance/pkg/dlq"
	"github.com/finsvc/finance/pkg/kafka"
	"github.com/finsvc/finance/pkg/testkit"
)

// decodeTestRequest reads the test's stand-in for a PaymentRequested,
// "<payment id>|<uid>" (pkg cannot import the generated protobuf code; the
// services' tests replay real ones).
func decodeTestRequest(value []byte) (dlq.RequestedPayment, error) {
	id, uid, ok := strings.Cut(string(value), "|")
	if !ok {
		return dlq.RequestedPayment{}, errors.New("not id|uid")
	}
	n, err := strconv.ParseInt(id, 10, 64)
	if err != nil {
		return dlq.RequestedPayment{}, err
	}
	return dlq.RequestedPayment{ID: n, UID: uid}, nil
}

// guarded is one payment of the replay-guard tests.
type guarded struct {
	status     string // "": the database does not hold it
	createdAgo time.Duration
	claimed    bool
	value      string // the record's value: "<id>|<uid>" unless set
}

// seedRequested writes the payments (ids from 500001 in order) and a
// payments.requested dead letter for each, and returns their uids.
func (f fixture) seedRequested(t *testing.T, ps []guarded) []string {
	t.Helper()
	c := ctx(t)
	if _, err := f.pool.Exec(c, `INSERT INTO merchants (id, name) VALUES (4593, 'Shop') ON CONFLICT DO NOTHING;
		INSERT INTO wallets (user_id, balance) VALUES (7, 0) ON CONFLICT DO NOTHING`); err != nil {
		t.Fatal(err)
	}
	uids := make([]string, len(ps))
	for i, p := range ps {
		id := int64(500001 + i)
		uids[i] = uuid.Must(uuid.NewV7()).String()
		if p.status != "" {
			if _, err := f.pool.Exec(c, `
				INSERT INTO payments (id, uid, user_id, merchant_id, amount, status, idempotency_key, request_hash, created_at)
				VALUES ($1, $2, 7, 4593, 100, $3, $4, 'h', now() - $5 * interval '1 second')`,
				id, uids[i], p.status, fmt.Sprint("k-", id), p.createdAgo.Seconds()); err != nil {
				t.Fatal(err)
			}
		}
		if p.claimed {
			if _, err := f.pool.Exec(c, `INSERT INTO dispatch_claims (payment_id, claimed_by) VALUES ($1, 'dispatcher-0')`, id); err != nil {
				t.Fatal(err)
			}
		}
		value := p.value
		if value == "" {
			value = fmt.Sprintf("%d|%s", id, uids[i])
		}
		f.publish(t, kafka.TopicRequested, 0, id, "7", value, dlq.Letter{Reason: "retry_budget_spent",
			Err: errors.New("processor 503"), Attempts: 5, Source: "dispatcher", PaymentID: id, UserID: 7})
	}
	return uids
}

// outcomesByPayment returns each record's outcome by payment id.
func outcomesByPayment(res dlq.ReplayResult) map[int64]string {
	out := map[int64]string{}
	for _, r := range res.Records {
		out[r.Entry.PaymentID] = r.Outcome
	}
	return out
}

func TestReplayRequestedCannotPayTwice(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	const (
		succeeded = 500001 + iota
		failed
		otherUID
		noUID
		undecodable
		notHeld
		expired
		claimed
		open
		accepted
	)
	strayUID := uuid.Must(uuid.NewV7()).String() // a uid this database never held
	uids := f.seedRequested(t, []guarded{
		{status: "succeeded", createdAgo: time.Hour},
		{status: "failed", createdAgo: time.Hour},
		{status: "unknown", createdAgo: time.Hour, value: fmt.Sprintf("%d|%s", otherUID, strayUID)},
		{status: "unknown", createdAgo: time.Hour, value: fmt.Sprintf("%d|", noUID)},
		{status: "unknown", createdAgo: time.Hour, value: "garbage"},
		{createdAgo: time.Hour},
		{status: "unknown", createdAgo: 25 * time.Hour},
		{status: "unknown", createdAgo: time.Hour, claimed: true},
		{status: "unknown", createdAgo: time.Hour},
		{status: "accepted", createdAgo: 23 * time.Hour},
	})
	f.publish(t, kafka.TopicOutcomes, 0, 1, "7", "an outcome", dlq.Letter{Reason: "unknown_payment", Attempts: 1, PaymentID: 599999, UserID: 7})
	skips := map[int64]string{
		succeeded:   dlq.OutcomeSkippedFinal,
		failed:      dlq.OutcomeSkippedFinal,
		otherUID:    dlq.OutcomeSkippedStale,
		noUID:       dlq.OutcomeSkippedStale,
		undecodable: dlq.OutcomeSkippedStale,
		notHeld:     dlq.OutcomeSkippedStale,
		expired:     dlq.OutcomeSkippedKeyExpired,
		claimed:     dlq.OutcomeSkippedClaimed,
	}
	want := func(outcome string, extra map[int64]string) map[int64]string {
		m := map[int64]string{open: outcome, accepted: outcome}
		for k, v := range skips {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	requested := dlq.Filter{Topic: kafka.TopicRequested}
	req := dlq.ReplayRequest{Filter: requested, Actor: "cli:test", Rate: 1000, DecodeRequest: decodeTestRequest}

	// Without a decoder the run refuses: nothing published, nothing audited.
	noDecoder := req
	noDecoder.DecodeRequest = nil
	if _, err := f.op.Replay(ctx(t), noDecoder); err == nil || !strings.Contains(err.Error(), "DecodeRequest") {
		t.Errorf("replay without a decoder: err = %v, want one naming DecodeRequest", err)
	}

	dryReq := req
	dryReq.DryRun = true
	dry, err := f.op.Replay(ctx(t), dryReq)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want(dlq.OutcomeWouldReplay, nil), outcomesByPayment(dry)); d != "" {
		t.Errorf("dry run (-want +got):\n%s", d)
	}
	wantCounts := map[string]int{dlq.OutcomeWouldReplay: 2, dlq.OutcomeSkippedFinal: 2, dlq.OutcomeSkippedStale: 4,
		dlq.OutcomeSkippedKeyExpired: 1, dlq.OutcomeSkippedClaimed: 1}
	if d := cmp.Diff(wantCounts, dry.Outcomes); d != "" {
		t.Errorf("dry run outcomes (-want +got):\n%s", d)
	}
	if dry.Selected != 10 || dry.Skipped != 8 || dry.Replayed != 0 || dry.KeyRetention != "24h0m0s" {
		t.Errorf("dry run: selected %d, replayed %d, skipped %d, key retention %s; want 10, 0, 8, 24h0m0s",
			dry.Selected, dry.Replayed, dry.Skipped, dry.KeyRetention)
	}
	reasons := map[int64]string{
		succeeded:   "payment 500001 is succeeded already",
		failed:      "payment 500002 is failed already",
		otherUID:    "the database holds no payment 500003 with uid " + strayUID,
		noUID:       "the record carries no payment_uid",
		undecodable: "not a decodable payment request: not id|uid",
		notHeld:     "the database holds no payment 500006 with uid " + uids[5],
		expired:     "beyond the key retention 24h0m0s",
		claimed:     "for the processor's as-is API, which has no idempotency key",
		open:        "within the key retention 24h0m0s of its key payment-" + uids[8],
		accepted:    "payment 500010 is accepted, created 23h",
	}
	statuses := map[int64]string{succeeded: "succeeded", failed: "failed", otherUID: "", noUID: "", undecodable: "",
		notHeld: "", expired: "unknown", claimed: "unknown", open: "unknown", accepted: "accepted"}
	for _, r := range dry.Records {
		id := r.Entry.PaymentID
		if !strings.Contains(r.Reason, reasons[id]) {
			t.Errorf("payment %d: reason %q lacks %q", id, r.Reason, reasons[id])
		}
		if r.PaymentStatus != statuses[id] {
			t.Errorf("payment %d: status %q, want %q", id, r.PaymentStatus, statuses[id])
		}
	}
	if n := f.count(t, kafka.TopicRequested); n != 0 {
		t.Fatalf("the dry run published %d records", n)
	}

	res, err := f.op.Replay(ctx(t), req)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want(dlq.OutcomeReplayed, nil), outcomesByPayment(res)); d != "" {
		t.Errorf("replay (-want +got):\n%s", d)
	}
	if res.Replayed != 2 || res.Skipped != 8 {
		t.Errorf("replay: %d replayed, %d skipped; want 2 and 8", res.Replayed, res.Skipped)
	}
	got := map[string]bool{}
	for _, r := range f.consume(t, kafka.TopicRequested, 2) {
		got[string(r.Value)] = true
	}
	if d := cmp.Diff(map[string]bool{fmt.Sprintf("%d|%s", open, uids[8]): true, fmt.Sprintf("%d|%s", accepted, uids[9]): true}, got); d != "" {
		t.Errorf("published (-want +got):\n%s", d)
	}

	// The audit holds each letter's outcome, its reason and its uid.
	rows, _ := f.pool.Query(ctx(t), `SELECT payment_id, outcome, reason, coalesce(payment_uid::text, '')
		FROM dlq_replayed_records WHERE replay_id = $1`, res.ID)
	type audited struct{ outcome, reason, uid string }
	audit := map[int64]audited{}
	var (
		id int64
		a  audited
	)
	if _, err := pgx.ForEachRow(rows, []any{&id, &a.outcome, &a.reason, &a.uid}, func() error {
		audit[id] = a
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for id, outcome := range want(dlq.OutcomeReplayed, nil) {
		a := audit[id]
		wantUID := uids[id-500001]
		switch id {
		case otherUID:
			wantUID = strayUID // the record's
		case noUID, undecodable:
			wantUID = ""
		}
		if a.outcome != outcome || !strings.Contains(a.reason, reasons[id]) || a.uid != wantUID {
			t.Errorf("audit of payment %d = %+v, want %s, a reason with %q, uid %q", id, a, outcome, reasons[id], wantUID)
		}
	}

	// Force repeats the open payments' replays and nothing else; a longer
	// key retention lets the expired one through.
	forced := req
	forced.Force, forced.KeyRetention = true, 48*time.Hour
	res, err = f.op.Replay(ctx(t), forced)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want(dlq.OutcomeReplayed, map[int64]string{expired: dlq.OutcomeReplayed}), outcomesByPayment(res)); d != "" {
		t.Errorf("forced replay with a 48h key retention (-want +got):\n%s", d)
	}
	if n := f.count(t, kafka.TopicRequested); n != 5 {
		t.Errorf("%s holds %d records, want 5", kafka.TopicRequested, n)
	}

	// Every topic at once: the outcome is replayed as before, the requests
	// replayed before are skipped, the rest still guarded.
	all := req
	all.Filter = dlq.Filter{}
	res, err = f.op.Replay(ctx(t), all)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want(dlq.OutcomeSkipped, map[int64]string{expired: dlq.OutcomeSkipped, 599999: dlq.OutcomeReplayed}), outcomesByPayment(res)); d != "" {
		t.Errorf("replay of every topic (-want +got):\n%s", d)
	}
	for _, r := range res.Records {
		if r.Outcome == dlq.OutcomeSkipped && !strings.Contains(r.Reason, "already replayed by replay") {
			t.Errorf("payment %d skipped with reason %q", r.Entry.PaymentID, r.Reason)
		}
	}
	if n := f.count(t, kafka.TopicRequested); n != 5 {
		t.Errorf("%s holds %d records, want 5", kafka.TopicRequested, n)
	}

	if _, err := f.op.Replay(ctx(t), dlq.ReplayRequest{Filter: requested, Actor: "x", KeyRetention: -time.Hour}); !errors.Is(err, dlq.ErrInvalidFilter) {
		t.Errorf("negative key retention: err = %v, want ErrInvalidFilter", err)
	}
}

// TestReplayLocksThePayment: the replay judges the payment under its row
// lock. A payment locked by a transaction that makes it succeed is read
// after that transaction commits, so its request is not sent again.
func TestReplayLocksThePayment(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.seedRequested(t, []guarded{{status: "unknown", createdAgo: time.Hour}})
	c := ctx(t)
	tx, err := f.pool.Begin(c)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(c) //nolint:errcheck // a no-op after Commit
	if _, err := tx.Exec(c, `SELECT 1 FROM payments WHERE id = 500001 FOR UPDATE`); err != nil {
		t.Fatal(err)
	}

	type result struct {
		res dlq.ReplayResult
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := f.op.Replay(c, dlq.ReplayRequest{Filter: dlq.Filter{Topic: kafka.TopicRequested}, Actor: "cli:test",
			Rate: 1000, DecodeRequest: decodeTestRequest})
		done <- result{res, err}
	}()
	testkit.Eventually(t, "the replay to wait for the payment's lock", func() bool {
		select {
		case r := <-done:
			t.Fatalf("the replay did not wait for the payment's lock: %+v, %v", r.res, r.err)
		default:
		}
		var waiting int
		if err := f.pool.QueryRow(c, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%FOR UPDATE OF p%'`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		return waiting > 0
	})
	if _, err := tx.Exec(c, `UPDATE payments SET status = 'succeeded' WHERE id = 500001`); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(c); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if d := cmp.Diff(map[int64]string{500001: dlq.OutcomeSkippedFinal}, outcomesByPayment(r.res)); d != "" {
		t.Errorf("replay (-want +got):\n%s", d)
	}
	if n := f.count(t, kafka.TopicRequested); n != 0 {
		t.Errorf("%s holds %d records, want 0", kafka.TopicRequested, n)
	}
}
