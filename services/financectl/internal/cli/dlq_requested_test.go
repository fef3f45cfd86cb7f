package cli_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"

	financev1 "github.com/finsvc/finance/proto/finance/v1"

	"github.com/finsvc/finance/pkg/dlq"
	"github.com/finsvc/finance/pkg/kafka"
	"github.com/finsvc/finance/pkg/kafkatest"
	"github.com/finsvc/finance/pkg/pgtest"
)

// requestedPayment is one payment of the replay-guard tests and the
// payments.requested dead letter made of it.
type requestedPayment struct {
	id         int64
	status     string // "": the database does not hold the record's payment
	createdAgo string // a PostgreSQL interval
	claimed    bool   // claimed by the as-is dispatcher
	recordUID  string // the uid the record carries: the payment's unless set; "-" for none
}

// The payments of the replay-guard tests, by what a replay must do with
// their dead letters.
var requestedPayments = map[string]requestedPayment{
	"succeeded":   {id: 300001, status: "succeeded", createdAgo: "1 hour"},
	"failed":      {id: 300002, status: "failed", createdAgo: "1 hour"},
	"another uid": {id: 300003, status: "unknown", createdAgo: "1 hour", recordUID: "018f0000-0000-7000-8000-000000000003"},
	"no uid":      {id: 300004, status: "unknown", createdAgo: "1 hour", recordUID: "-"},
	"not held":    {id: 300005, createdAgo: "1 hour"},
	"expired":     {id: 300006, status: "unknown", createdAgo: "25 hours"},
	"claimed":     {id: 300007, status: "unknown", createdAgo: "1 hour", claimed: true},
	"open":        {id: 300008, status: "unknown", createdAgo: "1 hour"},
}

// requestedEnv is a broker holding a payments.requested dead letter for
// each of requestedPayments and one payments.outcomes dead letter, and a
// migrated database holding the payments.
type requestedEnv struct {
	env   map[string]string
	cl    *kgo.Client
	dbURL string
	uids  map[int64]string // the uid each record carries
}

func newRequestedEnv(t *testing.T) requestedEnv {
	t.Helper()
	ctx := context.Background()
	cluster := kafkatest.New(t, 2, append(kafka.Topics(), kafka.DLQTopics()...))
	cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.Brokers()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	d := requestedEnv{cl: cl, dbURL: pgtest.NewDB(t), uids: map[int64]string{}}
	d.env = map[string]string{"KAFKA_BROKERS": strings.Join(cluster.Brokers(), ","), "DATABASE_URL": d.dbURL}
	conn, err := pgx.Connect(ctx, d.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `INSERT INTO merchants (id, name) VALUES (4593, 'Shop');
		INSERT INTO wallets (user_id, balance) VALUES (7, 0)`); err != nil {
		t.Fatal(err)
	}
	for _, p := range requestedPayments {
		uid := uuid.Must(uuid.NewV7()).String()
		if p.status != "" {
			if _, err := conn.Exec(ctx, `
				INSERT INTO payments (id, uid, user_id, merchant_id, amount, status, idempotency_key, request_hash, created_at, updated_at)
				VALUES ($1, $2, 7, 4593, 100, $3, $4, 'h', now() - $5::interval, now() - $5::interval)`,
				p.id, uid, p.status, fmt.Sprint("k-", p.id), p.createdAgo); err != nil {
				t.Fatal(err)
			}
		}
		if p.claimed {
			if _, err := conn.Exec(ctx, `INSERT INTO dispatch_claims (payment_id, claimed_by) VALUES ($1, 'dispatcher-0')`, p.id); err != nil {
				t.Fatal(err)
			}
		}
		switch p.recordUID {
		case "":
		case "-":
			uid = ""
		default:
			uid = p.recordUID
		}
		d.uids[p.id] = uid
		value, err := proto.Marshal(&financev1.PaymentRequested{PaymentId: p.id, PaymentUid: uid, UserId: 7, MerchantId: 4593, Amount: 100})
		if err != nil {
			t.Fatal(err)
		}
		rec := &kgo.Record{Topic: kafka.TopicRequested, Offset: p.id, Key: kafka.UserKey(7), Value: value}
		if err := dlq.Publish(ctx, cl, rec, dlq.Letter{Reason: "retry_budget_spent", Err: errors.New("processor 503"),
			Attempts: 5, Source: "dispatcher", PaymentID: p.id, UserID: 7}); err != nil {
			t.Fatal(err)
		}
	}
	rec := &kgo.Record{Topic: kafka.TopicOutcomes, Key: kafka.UserKey(7), Value: []byte("outcome")}
	if err := dlq.Publish(ctx, cl, rec, dlq.Letter{Reason: "unknown_payment", Err: errors.New("not found"), Attempts: 1,
		Source: "status-consumer", PaymentID: 399999, UserID: 7}); err != nil {
		t.Fatal(err)
	}
	return d
}

// records returns how many records topic holds.
func (d requestedEnv) records(t *testing.T, topic string) int64 {
	t.Helper()
	ends, err := kadm.NewClient(d.cl).ListEndOffsets(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
	return n
}

// replayJSON is the part of a replay's --json the tests read.
type replayJSON struct {
	ID      int64 `json:"replay_id"`
	Records []struct {
		Entry   dlq.Entry `json:"entry"`
		Outcome string    `json:"outcome"`
		Reason  string    `json:"reason"`
	} `json:"records"`
}

// replay runs financectl dlq replay --json with args and returns the
// outcome of each letter by payment id.
func (d requestedEnv) replay(t *testing.T, args ...string) (replayJSON, map[int64]string) {
	t.Helper()
	got := run(t, d.env, append([]string{"dlq", "replay", "--json", "--rate", "100"}, args...)...)
	if got.code != exitOK {
		t.Fatalf("dlq replay %v: exit %d, stderr:\n%s", args, got.code, got.stderr)
	}
	var res replayJSON
	if err := json.Unmarshal([]byte(got.stdout), &res); err != nil {
		t.Fatalf("dlq replay %v --json: %v\n%s", args, err, got.stdout)
	}
	outcomes := map[int64]string{}
	for _, r := range res.Records {
		outcomes[r.Entry.PaymentID] = r.Outcome
		if r.Entry.OriginalTopic == kafka.TopicRequested && r.Reason == "" {
			t.Errorf("dlq replay %v: %s (payment %d) %s without a reason", args, r.Entry.ID(), r.Entry.PaymentID, r.Outcome)
		}
	}
	return res, outcomes
}

// byName maps payment names to outcomes, as replay returns them.
func byName(m map[string]string) map[int64]string {
	out := map[int64]string{}
	for name, o := range m {
		out[requestedPayments[name].id] = o
	}
	return out
}

// TestDLQReplayRequestedCannotPayTwice: a payments.requested dead letter is
// replayed only for an open payment this database holds under the record's
// id and uid, never claimed for the as-is API, within the processor's key
// retention; every other letter is skipped with its reason, dry run or not,
// forced or not.
func TestDLQReplayRequestedCannotPayTwice(t *testing.T) {
	t.Parallel()
	d := newRequestedEnv(t)

	// An empty filter replays nothing: the topic must be named.
	got := run(t, d.env, "dlq", "replay", "--dry-run")
	if got.code != exitUsage || !strings.Contains(got.stderr, "--topic") || !strings.Contains(got.stderr, "--all-topics") {
		t.Errorf("replay without a topic: exit %d, stderr:\n%s", got.code, got.stderr)
	}

	skips := map[string]string{
		"succeeded":   dlq.OutcomeSkippedFinal,
		"failed":      dlq.OutcomeSkippedFinal,
		"another uid": dlq.OutcomeSkippedStale,
		"no uid":      dlq.OutcomeSkippedStale,
		"not held":    dlq.OutcomeSkippedStale,
		"expired":     dlq.OutcomeSkippedKeyExpired,
		"claimed":     dlq.OutcomeSkippedClaimed,
	}
	with := func(name, outcome string) map[string]string {
		m := map[string]string{name: outcome}
		for k, v := range skips {
			m[k] = v
		}
		return m
	}

	_, dry := d.replay(t, "--topic", kafka.TopicRequested, "--dry-run")
	if diff := cmp.Diff(byName(with("open", dlq.OutcomeWouldReplay)), dry); diff != "" {
		t.Errorf("dry run (-want +got):\n%s", diff)
	}
	got = run(t, d.env, "dlq", "replay", "--topic", kafka.TopicRequested, "--dry-run")
	if got.code != exitOK {
		t.Fatalf("text dry run: exit %d, stderr:\n%s", got.code, got.stderr)
	}
	for _, want := range []string{"8 selected, 0 replayed, 7 skipped", "skipped_final: 2", "skipped_stale: 3",
		"skipped_key_expired: 1", "skipped_claimed: 1", "would_replay: 1",
		"payment 300001 is succeeded already", "the database holds no payment 300003 with uid",
		"the record carries no payment_uid", "beyond the key retention 24h0m0s", "as-is API"} {
		if !strings.Contains(got.stdout, want) {
			t.Errorf("text dry run lacks %q:\n%s", want, got.stdout)
		}
	}
	if n := d.records(t, kafka.TopicRequested); n != 0 {
		t.Fatalf("after the dry runs %s holds %d records, want 0", kafka.TopicRequested, n)
	}

	res, real := d.replay(t, "--topic", kafka.TopicRequested)
	if diff := cmp.Diff(byName(with("open", dlq.OutcomeReplayed)), real); diff != "" {
		t.Errorf("replay (-want +got):\n%s", diff)
	}
	if n := d.records(t, kafka.TopicRequested); n != 1 {
		t.Fatalf("after the replay %s holds %d records, want 1 (payment 300008's)", kafka.TopicRequested, n)
	}

	// The audit says what was done with each letter, why, and to which uid.
	conn, err := pgx.Connect(context.Background(), d.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	rows, _ := conn.Query(context.Background(), `
		SELECT payment_id, outcome, reason <> '', coalesce(payment_uid::text, '-')
		FROM dlq_replayed_records WHERE replay_id = $1`, res.ID)
	type audited struct {
		Outcome   string
		HasReason bool
		UID       string
	}
	audit := map[int64]audited{}
	var (
		id int64
		a  audited
	)
	if _, err := pgx.ForEachRow(rows, []any{&id, &a.Outcome, &a.HasReason, &a.UID}, func() error {
		audit[id] = a
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	wantAudit := map[int64]audited{}
	for name, o := range with("open", dlq.OutcomeReplayed) {
		p := requestedPayments[name]
		uid := d.uids[p.id]
		if uid == "" {
			uid = "-"
		}
		wantAudit[p.id] = audited{o, true, uid}
	}
	if diff := cmp.Diff(wantAudit, audit); diff != "" {
		t.Errorf("audit of replay %d (-want +got):\n%s", res.ID, diff)
	}

	// A longer key retention lets the older payment through; the one
	// replayed already is skipped.
	_, longer := d.replay(t, "--topic", kafka.TopicRequested, "--dry-run", "--key-retention", "48h")
	wantLonger := with("open", dlq.OutcomeSkipped)
	wantLonger["expired"] = dlq.OutcomeWouldReplay
	if diff := cmp.Diff(byName(wantLonger), longer); diff != "" {
		t.Errorf("dry run with --key-retention 48h (-want +got):\n%s", diff)
	}

	// Force repeats the replay of the open payment, and nothing else.
	_, forced := d.replay(t, "--topic", kafka.TopicRequested, "--force")
	if diff := cmp.Diff(byName(with("open", dlq.OutcomeReplayed)), forced); diff != "" {
		t.Errorf("forced replay (-want +got):\n%s", diff)
	}
	if n := d.records(t, kafka.TopicRequested); n != 2 {
		t.Errorf("after the forced replay %s holds %d records, want 2", kafka.TopicRequested, n)
	}

	// --all-topics replays the other topics' letters as before, and still
	// guards payments.requested.
	_, all := d.replay(t, "--all-topics")
	wantAll := byName(with("open", dlq.OutcomeSkipped))
	wantAll[399999] = dlq.OutcomeReplayed
	if diff := cmp.Diff(wantAll, all); diff != "" {
		t.Errorf("--all-topics (-want +got):\n%s", diff)
	}
	if n, m := d.records(t, kafka.TopicRequested), d.records(t, kafka.TopicOutcomes); n != 2 || m != 1 {
		t.Errorf("after --all-topics: %s holds %d records (want 2), %s %d (want 1)", kafka.TopicRequested, n, kafka.TopicOutcomes, m)
	}
}
