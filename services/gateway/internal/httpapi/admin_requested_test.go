package httpapi_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"

	financev1 "github.com/finsvc/finance/proto/finance/v1"

	"github.com/finsvc/finance/pkg/dlq"
	"github.com/finsvc/finance/pkg/kafka"
	"github.com/finsvc/finance/pkg/payment"
)

// seedRequested adds, for each payment below, the payment (unless "not
// held") and a payments.requested dead letter naming it, and returns the
// payment ids by name.
func (d dlqEnv) seedRequested(t *testing.T) map[string]int64 {
	t.Helper()
	ctx := context.Background()
	if _, err := d.pool.Exec(ctx, `INSERT INTO merchants (id, name) VALUES (4593, 'Shop') ON CONFLICT DO NOTHING;
		INSERT INTO wallets (user_id, balance) VALUES (7, 0) ON CONFLICT DO NOTHING`); err != nil {
		t.Fatal(err)
	}
	ids := map[string]int64{}
	for i, p := range []struct {
		name, status, createdAgo string
		claimed                  bool
	}{
		{"succeeded", "succeeded", "1 hour", false},
		{"not held", "", "1 hour", false},
		{"expired", "unknown", "25 hours", false},
		{"claimed", "unknown", "1 hour", true},
		{"open", "unknown", "1 hour", false},
	} {
		id := int64(400001 + i)
		ids[p.name] = id
		uid := payment.NewUID().String()
		if p.status != "" {
			if _, err := d.pool.Exec(ctx, `
				INSERT INTO payments (id, uid, user_id, merchant_id, amount, status, idempotency_key, request_hash, created_at, updated_at)
				VALUES ($1, $2, 7, 4593, 100, $3, $4, 'h', now() - $5::interval, now() - $5::interval)`,
				id, uid, p.status, fmt.Sprint("k-", id), p.createdAgo); err != nil {
				t.Fatal(err)
			}
		}
		if p.claimed {
			if _, err := d.pool.Exec(ctx, `INSERT INTO dispatch_claims (payment_id, claimed_by) VALUES ($1, 'dispatcher-0')`, id); err != nil {
				t.Fatal(err)
			}
		}
		value, err := proto.Marshal(&financev1.PaymentRequested{PaymentId: id, PaymentUid: uid, UserId: 7, MerchantId: 4593, Amount: 100})
		if err != nil {
			t.Fatal(err)
		}
		rec := &kgo.Record{Topic: kafka.TopicRequested, Offset: id, Key: kafka.UserKey(7), Value: value}
		if err := dlq.Publish(ctx, d.cl, rec, dlq.Letter{Reason: "retry_budget_spent", Err: errors.New("processor 503"),
			Attempts: 5, Source: "dispatcher", PaymentID: id, UserID: 7}); err != nil {
			t.Fatal(err)
		}
	}
	return ids
}

func (d dlqEnv) requested(t *testing.T) int64 {
	t.Helper()
	ends, err := kadm.NewClient(d.cl).ListEndOffsets(context.Background(), kafka.TopicRequested)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
	return n
}

// TestAdminDLQReplayRequestedCannotPayTwice: the admin replay of
// payments.requested dead letters sends again only an open payment held
// under the record's id and uid, never claimed for the as-is API, within
// the key retention, and its JSON says per letter what it did (or, in a dry
// run, would do) and why.
func TestAdminDLQReplayRequestedCannotPayTwice(t *testing.T) {
	t.Parallel()
	d := newDLQEnv(t)
	ids := d.seedRequested(t)
	admin := token(t, 42, true)
	type record struct {
		Entry         dlq.Entry `json:"entry"`
		Outcome       string    `json:"outcome"`
		Reason        string    `json:"reason"`
		PaymentStatus string    `json:"payment_status"`
	}
	replay := func(query string) map[int64]string {
		t.Helper()
		w := d.do(req{method: http.MethodPost, path: "/v1/admin/dlq/replay?" + query, token: admin})
		if w.Code != http.StatusOK {
			t.Fatalf("POST replay?%s: %d %s", query, w.Code, w.Body.String())
		}
		res := decodeBody[struct {
			Records []record `json:"records"`
		}](t, w)
		out := map[int64]string{}
		for _, r := range res.Records {
			out[r.Entry.PaymentID] = r.Outcome
			if r.Entry.OriginalTopic == kafka.TopicRequested && r.Reason == "" {
				t.Errorf("?%s: payment %d %s without a reason", query, r.Entry.PaymentID, r.Outcome)
			}
		}
		return out
	}
	want := func(open string, others ...string) map[int64]string {
		m := map[int64]string{
			ids["succeeded"]: "skipped_final",
			ids["not held"]:  "skipped_stale",
			ids["expired"]:   "skipped_key_expired",
			ids["claimed"]:   "skipped_claimed",
			ids["open"]:      open,
		}
		for i := 0; i+1 < len(others); i += 2 {
			m[ids[others[i]]] = others[i+1]
		}
		return m
	}

	if diff := cmp.Diff(want("would_replay"), replay("topic=payments.requested&dry_run=true")); diff != "" {
		t.Errorf("dry run (-want +got):\n%s", diff)
	}
	w := d.do(req{method: http.MethodPost, path: "/v1/admin/dlq/replay?topic=payments.requested.dlq&dry_run=true&payment_id=" +
		fmt.Sprint(ids["expired"]), token: admin})
	for _, s := range []string{`"outcome":"skipped_key_expired"`, `"payment_status":"unknown"`, "beyond the key retention 24h0m0s"} {
		if !strings.Contains(w.Body.String(), s) {
			t.Errorf("dry run of the expired payment lacks %s: %s", s, w.Body.String())
		}
	}
	if n := d.requested(t); n != 0 {
		t.Fatalf("the dry runs published %d records", n)
	}

	if diff := cmp.Diff(want("replayed"), replay("topic=payments.requested&rate=100")); diff != "" {
		t.Errorf("replay (-want +got):\n%s", diff)
	}
	if n := d.requested(t); n != 1 {
		t.Fatalf("payments.requested holds %d records after the replay, want 1 (the open payment's)", n)
	}
	if n := d.count(`SELECT count(*) FROM dlq_replayed_records
		WHERE replay_id = (SELECT max(id) FROM dlq_replays) AND outcome LIKE 'skipped_%' AND reason <> '' AND payment_uid IS NOT NULL`); n != 4 {
		t.Errorf("audited skips with a reason and a uid = %d, want 4", n)
	}

	// key_retention: a longer one lets the older payment through.
	if diff := cmp.Diff(want("skipped", "expired", "would_replay"),
		replay("topic=payments.requested&dry_run=true&key_retention=48h")); diff != "" {
		t.Errorf("dry run with key_retention=48h (-want +got):\n%s", diff)
	}
	// all_topics: the outcomes' letters (payment 100001 and an
	// undecodable one) are replayed as before, the requests still guarded.
	all := want("skipped", "expired", "skipped_key_expired")
	all[100001], all[0] = "would_replay", "would_replay"
	if diff := cmp.Diff(all, replay("all_topics=true&dry_run=true")); diff != "" {
		t.Errorf("dry run with all_topics=true (-want +got):\n%s", diff)
	}
	if n := d.requested(t); n != 1 {
		t.Errorf("payments.requested holds %d records at the end, want 1", n)
	}
}

// TestAdminDLQReplayNeedsTopic: a replay that names no topic is refused
// (problem+json 400, nothing published, nothing audited), as is one naming
// a topic and all_topics at once.
func TestAdminDLQReplayNeedsTopic(t *testing.T) {
	t.Parallel()
	d := newDLQEnv(t)
	d.seedRequested(t)
	admin := token(t, 1, true)
	for _, tc := range []struct{ query, detail string }{
		{"", "a replay needs topic (one of payments.requested, payments.outcomes, payments.events, or its .dlq topic) or all_topics=true"},
		{"user_id=7&rate=100", "a replay needs topic"},
		{"all_topics=false", "a replay needs topic"},
		{"topic=payments.outcomes&all_topics=true", "topic=payments.outcomes and all_topics=true contradict each other"},
	} {
		p := wantProblem(t, d.do(req{method: http.MethodPost, path: "/v1/admin/dlq/replay?" + tc.query, token: admin}),
			http.StatusBadRequest, "invalid-request")
		if !strings.Contains(p.Detail, tc.detail) {
			t.Errorf("?%s: detail %q lacks %q", tc.query, p.Detail, tc.detail)
		}
	}
	if n, m := d.requested(t), d.outcomes(t); n != 0 || m != 0 {
		t.Errorf("refused replays published %d requests and %d outcomes", n, m)
	}
	if n := d.count(`SELECT count(*) FROM dlq_replays`); n != 0 {
		t.Errorf("refused replays audited %d runs, want 0", n)
	}
}
