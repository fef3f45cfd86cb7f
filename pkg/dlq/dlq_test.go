package dlq_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/finsvc/finance/pkg/dlq"
	"github.com/finsvc/finance/pkg/kafka"
	"github.com/finsvc/finance/pkg/kafkatest"
	"github.com/finsvc/finance/pkg/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

const waitTimeout = 30 * time.Second

type fixture struct {
	op      *dlq.Operator
	cl      *kgo.Client
	cluster *kafkatest.Cluster
	pool    *pgxpool.Pool
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	cluster := kafkatest.New(t, 2, append(kafka.Topics(), kafka.DLQTopics()...))
	pool := pgtest.NewPool(t)
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	op, err := dlq.NewOperator(cluster.Brokers(), pool, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(op.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.Brokers()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return fixture{op: op, cl: cl, cluster: cluster, pool: pool}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), waitTimeout)
	t.Cleanup(cancel)
	return c
}

// publish dead-letters a record as a consumer of topic at partition/offset would.
func (f fixture) publish(t *testing.T, topic string, partition int32, offset int64, key, value string, l dlq.Letter) {
	t.Helper()
	rec := &kgo.Record{Topic: topic, Partition: partition, Offset: offset, Key: []byte(key), Value: []byte(value),
		Headers: []kgo.RecordHeader{{Key: "trace", Value: []byte("t-" + value)}}}
	if err := dlq.Publish(ctx(t), f.cl, rec, l); err != nil {
		t.Fatal(err)
	}
}

// count returns how many records topic holds.
func (f fixture) count(t *testing.T, topic string) int64 {
	t.Helper()
	ends, err := kadm.NewClient(f.cl).ListEndOffsets(ctx(t), topic)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
	return n
}

func ids(es []dlq.Entry) []string {
	out := []string{}
	for _, e := range es {
		out = append(out, string(e.Value))
	}
	return out
}

func TestPublishListGet(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	first := time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC)
	f.publish(t, kafka.TopicOutcomes, 3, 17, "7", "a", dlq.Letter{Reason: "undecodable", Err: errors.New("proto: bad wire type"),
		Attempts: 1, FirstSeen: first, Source: "status-consumer"})
	f.publish(t, kafka.TopicOutcomes, 1, 5, "8", "b", dlq.Letter{Reason: "unknown_payment", Err: errors.New("payment 424242: payment not found"),
		Attempts: 2, FirstSeen: first, Source: "status-consumer", PaymentID: 424242, UserID: 8})
	f.publish(t, kafka.TopicRequested, 0, 9, "7", "c", dlq.Letter{Reason: "retry_budget_spent", Err: errors.New("processor: 503"),
		Attempts: 5, FirstSeen: first, Source: "dispatcher", PaymentID: 100001, UserID: 7})

	all, err := f.op.List(ctx(t), dlq.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"a", "b", "c"}, ids(all)); diff != "" {
		t.Errorf("all (-want +got):\n%s", diff)
	}
	a := all[0]
	want := dlq.Entry{
		Topic: "payments.outcomes.dlq", Partition: a.Partition, Offset: a.Offset, Timestamp: a.Timestamp,
		OriginalTopic: kafka.TopicOutcomes, OriginalPartition: 3, OriginalOffset: 17,
		Error: "proto: bad wire type", Reason: "undecodable", Attempts: 1, FirstSeen: first, Source: "status-consumer",
		UserID: 7, Key: []byte("7"), Value: []byte("a"), Headers: map[string]string{"trace": "t-a"},
	}
	if diff := cmp.Diff(want, a); diff != "" {
		t.Errorf("entry (-want +got):\n%s", diff)
	}

	tests := []struct {
		name   string
		filter dlq.Filter
		want   []string
	}{
		{"by user, header or key", dlq.Filter{UserID: 7}, []string{"a", "c"}},
		{"by payment", dlq.Filter{PaymentID: 424242}, []string{"b"}},
		{"by error text", dlq.Filter{Error: "WIRE"}, []string{"a"}},
		{"by reason", dlq.Filter{Error: "budget"}, []string{"c"}},
		{"by original topic", dlq.Filter{Topic: kafka.TopicOutcomes}, []string{"a", "b"}},
		{"by dlq topic", dlq.Filter{Topic: "payments.requested.dlq"}, []string{"c"}},
		{"since the future", dlq.Filter{Since: time.Now().Add(time.Hour)}, []string{}},
		{"until the past", dlq.Filter{Until: time.Now().Add(-time.Hour)}, []string{}},
		{"time window", dlq.Filter{Since: time.Now().Add(-time.Hour), Until: time.Now().Add(time.Hour)}, []string{"a", "b", "c"}},
		{"limit", dlq.Filter{Limit: 2}, []string{"a", "b"}},
		{"by address", dlq.Filter{Topic: a.Topic, At: &dlq.Address{Partition: a.Partition, Offset: a.Offset}}, []string{"a"}},
		{"by address and user", dlq.Filter{Topic: a.Topic, UserID: 8, At: &dlq.Address{Partition: a.Partition, Offset: a.Offset}}, []string{}},
		{"by an address past the end", dlq.Filter{Topic: a.Topic, At: &dlq.Address{Partition: a.Partition, Offset: a.Offset + 100}}, []string{}},
		{"by an address of another partition", dlq.Filter{Topic: a.Topic, At: &dlq.Address{Partition: a.Partition + 1, Offset: a.Offset}}, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := f.op.List(ctx(t), tt.filter)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, ids(got)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}

	got, err := f.op.Get(ctx(t), a.Topic, a.Partition, a.Offset)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(a, got); diff != "" {
		t.Errorf("Get (-want +got):\n%s", diff)
	}
	if _, err := f.op.Get(ctx(t), a.Topic, a.Partition, a.Offset+100); !errors.Is(err, dlq.ErrNotFound) {
		t.Errorf("Get past the end: err = %v, want ErrNotFound", err)
	}
	if _, err := f.op.Get(ctx(t), "nope", 0, 0); !errors.Is(err, dlq.ErrUnknownTopic) {
		t.Errorf("Get of an unknown topic: err = %v, want ErrUnknownTopic", err)
	}
	for _, bad := range []dlq.Filter{{Topic: "x"}, {Limit: -1}, {Limit: dlq.MaxLimit + 1}, {UserID: -1},
		{Since: time.Now(), Until: time.Now().Add(-time.Second)}, {At: &dlq.Address{}},
		{Topic: a.Topic, At: &dlq.Address{Partition: -1}}, {Topic: a.Topic, At: &dlq.Address{Offset: -1}}} {
		if _, err := f.op.List(ctx(t), bad); err == nil {
			t.Errorf("List(%+v): want an error", bad)
		}
	}
}

func TestReplay(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	l := dlq.Letter{Reason: "unknown_payment", Err: errors.New("not found"), Attempts: 1, Source: "status-consumer"}
	f.publish(t, kafka.TopicOutcomes, 0, 1, "7", "x", l)
	f.publish(t, kafka.TopicOutcomes, 0, 2, "8", "y", l)

	// A dry run publishes nothing and says what it would do.
	dry, err := f.op.Replay(ctx(t), dlq.ReplayRequest{Filter: dlq.Filter{UserID: 7}, Actor: "cli:test", DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if dry.Selected != 1 || dry.Replayed != 0 || len(dry.Records) != 1 || dry.Records[0].Outcome != dlq.OutcomeWouldReplay {
		t.Errorf("dry run = %+v", dry)
	}
	if n := f.count(t, kafka.TopicOutcomes); n != 0 {
		t.Errorf("after a dry run %s holds %d records, want 0", kafka.TopicOutcomes, n)
	}

	// A real run publishes the original once and records it.
	res, err := f.op.Replay(ctx(t), dlq.ReplayRequest{Filter: dlq.Filter{UserID: 7}, Actor: "token:1", Rate: 100})
	if err != nil {
		t.Fatal(err)
	}
	if res.Selected != 1 || res.Replayed != 1 || res.Records[0].Outcome != dlq.OutcomeReplayed || res.ID == dry.ID {
		t.Errorf("replay = %+v", res)
	}
	recs := f.consume(t, kafka.TopicOutcomes, 1)
	r := recs[0]
	if string(r.Key) != "7" || string(r.Value) != "x" {
		t.Errorf("replayed record %q=%q, want 7=x", r.Key, r.Value)
	}
	headers := map[string]string{}
	for _, h := range r.Headers {
		headers[h.Key] = string(h.Value)
	}
	wantHeaders := map[string]string{"trace": "t-x", dlq.HeaderReplayedFrom: res.Records[0].Entry.ID()}
	if diff := cmp.Diff(wantHeaders, headers); diff != "" {
		t.Errorf("replayed headers (-want +got):\n%s", diff)
	}

	// Again: skipped, nothing published. List shows when it was replayed.
	again, err := f.op.Replay(ctx(t), dlq.ReplayRequest{Filter: dlq.Filter{UserID: 7}, Actor: "token:1"})
	if err != nil {
		t.Fatal(err)
	}
	if again.Skipped != 1 || again.Replayed != 0 {
		t.Errorf("second replay = %+v, want one skipped", again)
	}
	if n := f.count(t, kafka.TopicOutcomes); n != 1 {
		t.Errorf("%s holds %d records after the second replay, want 1", kafka.TopicOutcomes, n)
	}
	listed, err := f.op.List(ctx(t), dlq.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if listed[0].ReplayedAt == nil || listed[1].ReplayedAt != nil {
		t.Errorf("replayed_at = %v, %v; want set for x only", listed[0].ReplayedAt, listed[1].ReplayedAt)
	}
	// Force replays it once more.
	forced, err := f.op.Replay(ctx(t), dlq.ReplayRequest{Filter: dlq.Filter{UserID: 7}, Actor: "token:1", Force: true})
	if err != nil {
		t.Fatal(err)
	}
	if forced.Replayed != 1 {
		t.Errorf("forced replay = %+v, want one replayed", forced)
	}

	// Every run is audited, dry runs included.
	type run struct {
		Actor                       string
		DryRun, Force               bool
		Selected, Replayed, Skipped int
		Finished                    bool
	}
	rows, _ := f.pool.Query(ctx(t), `SELECT actor, dry_run, force, selected, replayed, skipped, finished_at IS NOT NULL
		FROM dlq_replays ORDER BY id`)
	var got []run
	var one run
	if _, err := pgx.ForEachRow(rows, []any{&one.Actor, &one.DryRun, &one.Force, &one.Selected, &one.Replayed, &one.Skipped, &one.Finished},
		func() error { got = append(got, one); return nil }); err != nil {
		t.Fatal(err)
	}
	var outcomes []string
	rows, _ = f.pool.Query(ctx(t), `SELECT outcome FROM dlq_replayed_records ORDER BY replay_id`)
	if outcomes, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"would_replay", "replayed", "skipped", "replayed"}, outcomes); diff != "" {
		t.Errorf("audited records (-want +got):\n%s", diff)
	}
	want := []run{
		{"cli:test", true, false, 1, 0, 0, true},
		{"token:1", false, false, 1, 1, 0, true},
		{"token:1", false, false, 1, 0, 1, true},
		{"token:1", false, true, 1, 1, 0, true},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("audit (-want +got):\n%s", diff)
	}
	if _, err := f.op.Replay(ctx(t), dlq.ReplayRequest{Actor: ""}); !errors.Is(err, dlq.ErrInvalidFilter) {
		t.Errorf("replay without actor: err = %v, want ErrInvalidFilter", err)
	}
}

func (f fixture) consume(t *testing.T, topic string, n int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(f.cluster.Brokers()...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	c := ctx(t)
	var out []*kgo.Record
	for len(out) < n {
		fs := cl.PollFetches(c)
		if c.Err() != nil {
			t.Fatalf("read %d of %d records", len(out), n)
		}
		out = append(out, fs.Records()...)
	}
	return out
}
