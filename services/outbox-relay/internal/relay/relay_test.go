package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/finsvc/finance/pkg/kafka"
	"github.com/finsvc/finance/pkg/kafkatest"
	"github.com/finsvc/finance/pkg/obs"
	"github.com/finsvc/finance/pkg/outbox"
	"github.com/finsvc/finance/pkg/pgtest"
	"github.com/finsvc/finance/pkg/postgres"
	"github.com/finsvc/finance/pkg/testkit"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// message is what a test compares: a record's topic, key and payload.
type message struct {
	Topic   string
	Key     string
	Payload []byte
}

// bundle is one test's database and Kafka cluster, with what the tests do
// with them.
type bundle struct {
	url     string
	pool    *pgxpool.Pool
	cluster *kafkatest.Cluster
}

// setup is every test's start: a bundle over a cluster of partitions per
// topic, and a relay running on it until the test ends (b.start runs more).
func setup(t *testing.T, partitions int32) (runningRelay, *bundle) {
	t.Helper()
	b := newBundle(t, partitions)
	return b.start(t), b
}

func newBundle(t *testing.T, partitions int32) *bundle {
	t.Helper()
	url := pgtest.NewDB(t)
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return &bundle{url: url, pool: pool, cluster: kafkatest.New(t, partitions, kafka.Topics())}
}

// runningRelay is a relay started by bundle.start.
type runningRelay struct {
	*Relay
	stop func() // cancels Run and waits for it to return
}

// start runs a relay on b until the test ends or its stop.
func (b *bundle) start(t *testing.T) runningRelay {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	kc, err := kafka.NewClient(b.cluster.Brokers(), logger, ProducerOpts(5*time.Second)...)
	if err != nil {
		t.Fatal(err)
	}
	r := New(Config{
		DatabaseURL:     b.url,
		BatchSize:       7, // small, so that tests cross batch boundaries
		PollInterval:    200 * time.Millisecond,
		LockRetry:       20 * time.Millisecond,
		BacklogInterval: 50 * time.Millisecond,
	}, b.pool, kc, logger, prometheus.NewRegistry())

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
			kc.Close()
		})
	}
	t.Cleanup(stop)
	return runningRelay{Relay: r, stop: stop}
}

// insert writes msgs to the outbox, each in its own transaction, in order.
func (b *bundle) insert(t *testing.T, msgs ...message) {
	t.Helper()
	for _, m := range msgs {
		err := postgres.InTx(context.Background(), b.pool, func(tx pgx.Tx) error {
			return outbox.Insert(context.Background(), tx, m.Topic, []byte(m.Key), m.Payload)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// messages returns n messages for topic spread over users keys, with binary
// payloads numbered from first.
func messages(topic string, first, n, users int) []message {
	out := make([]message, n)
	for i := range out {
		seq := first + i
		out[i] = message{
			Topic:   topic,
			Key:     string(kafka.UserKey(int64(seq%users + 1))),
			Payload: []byte(fmt.Sprintf("\x00\xff payload %d", seq)),
		}
	}
	return out
}

// consume reads records of topic from the start until it has n, and returns them.
func (b *bundle) consume(t *testing.T, topic string, n int) []message {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.cluster.Brokers()...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), testkit.DefaultWait)
	defer cancel()
	var got []message
	for len(got) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d records of %s before the deadline", len(got), n, topic)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			got = append(got, message{Topic: r.Topic, Key: string(r.Key), Payload: r.Value})
		})
	}
	return got
}

// byKey groups msgs by key, keeping their order: Kafka orders per partition,
// and one key always maps to one partition.
func byKey(msgs []message) map[string][]message {
	out := map[string][]message{}
	for _, m := range msgs {
		out[m.Key] = append(out[m.Key], m)
	}
	return out
}

func (b *bundle) outboxRows(t *testing.T) int {
	t.Helper()
	var n int
	if err := b.pool.QueryRow(context.Background(), `SELECT count(*) FROM outbox`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// waitEmpty waits until the relay has deleted every outbox row.
func (b *bundle) waitEmpty(t *testing.T) {
	t.Helper()
	testkit.Eventually(t, "an empty outbox", func() bool { return b.outboxRows(t) == 0 })
}

func TestRelayPublishesInIDOrderAndDeletes(t *testing.T) {
	t.Parallel()
	b := newBundle(t, 1) // one partition: Kafka's order is then the relay's order
	want := messages(kafka.TopicRequested, 0, 30, 4)

	b.insert(t, want[:12]...) // a backlog waiting before the relay starts
	r := b.start(t)
	b.insert(t, want[12:]...) // and rows that arrive while it runs

	got := b.consume(t, kafka.TopicRequested, len(want))
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("published records (-want +got):\n%s", diff)
	}
	b.waitEmpty(t)
	wantPublished(t, r, "the relay", len(want))
	if got := testutil.ToFloat64(r.m.publishErrors); got != 0 {
		t.Errorf("publish errors = %v, want 0", got)
	}
	if !r.Leader() || testutil.ToFloat64(r.m.leader) != 1 {
		t.Error("the only relay is not the leader")
	}
	testkit.Eventually(t, "the backlog gauge to read 0", func() bool { return testutil.ToFloat64(r.m.backlog) == 0 })
}

// wantPublished wants r's count of published records to be want. The relay
// adds a batch to it just after the batch's delete commits, so an outbox seen
// empty can come a moment before the count: it waits for the count to reach
// want first.
func wantPublished(t *testing.T, r runningRelay, who string, want int) {
	t.Helper()
	deadline := time.Now().Add(testkit.DefaultWait)
	got := testutil.ToFloat64(r.m.published)
	for got < float64(want) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		got = testutil.ToFloat64(r.m.published)
	}
	if got != float64(want) {
		t.Errorf("%s published %v records, want %d", who, got, want)
	}
}

func TestRelayOnlyOneOfTwoPublishes(t *testing.T) {
	t.Parallel()
	r1, b := setup(t, 3)
	r2 := b.start(t)
	testkit.Eventually(t, "a leader", func() bool { return r1.Leader() || r2.Leader() })
	leader, standby := r1, r2
	if r2.Leader() {
		leader, standby = r2, r1
	}
	if standby.Leader() {
		t.Fatal("both relays are leaders")
	}
	// A connected standby is ready: it can take over at once.
	testkit.Eventually(t, "the standby to be ready", func() bool { return standby.Ready(context.Background()) == nil })

	first := messages(kafka.TopicRequested, 0, 40, 5)
	b.insert(t, first...)
	got := b.consume(t, kafka.TopicRequested, len(first))
	b.waitEmpty(t)
	if diff := cmp.Diff(byKey(first), byKey(got)); diff != "" {
		t.Errorf("published records per key (-want +got):\n%s", diff)
	}
	wantPublished(t, leader, "leader", len(first))
	if got := testutil.ToFloat64(standby.m.published); got != 0 {
		t.Errorf("standby published %v records, want 0", got)
	}

	// The leader stops: its session ends, the lock is released and the
	// standby takes over from where the outbox stands.
	leader.stop()
	testkit.Eventually(t, "the standby to take over", standby.Leader)
	second := messages(kafka.TopicRequested, len(first), 10, 5)
	b.insert(t, second...)
	got = b.consume(t, kafka.TopicRequested, len(first)+len(second))
	b.waitEmpty(t)
	if diff := cmp.Diff(byKey(append(first, second...)), byKey(got)); diff != "" {
		t.Errorf("published records per key after failover (-want +got):\n%s", diff)
	}
	wantPublished(t, standby, "new leader", len(second))
}

func TestRelayLeaderLosingItsConnectionHandsOver(t *testing.T) {
	t.Parallel()
	r1, b := setup(t, 3)
	r2 := b.start(t)
	testkit.Eventually(t, "a leader", func() bool { return r1.Leader() || r2.Leader() })

	// Kill the backend holding the lock, as a network cut or a failover would.
	var killed bool
	err := b.pool.QueryRow(context.Background(), `
		SELECT pg_terminate_backend(pid) FROM pg_locks
		WHERE locktype = 'advisory' AND granted
		  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&killed)
	if err != nil || !killed {
		t.Fatalf("terminate the leader's backend: %v (terminated %v)", err, killed)
	}

	want := messages(kafka.TopicRequested, 0, 30, 4)
	b.insert(t, want...)
	got := b.consume(t, kafka.TopicRequested, len(want))
	b.waitEmpty(t)
	if diff := cmp.Diff(byKey(want), byKey(got)); diff != "" {
		t.Errorf("published records per key (-want +got):\n%s", diff)
	}
	if r1.Leader() == r2.Leader() {
		t.Errorf("leaders after the handover: %v and %v, want exactly one", r1.Leader(), r2.Leader())
	}
}

func TestRelayKeepsRowsWhileKafkaRefusesThem(t *testing.T) {
	t.Parallel()
	r, b := setup(t, 2)
	// Every produce to the topic fails with a non-retriable error until removed.
	fault := b.cluster.Fault(kfake.Fault{
		Keys:  []kmsg.Key{kmsg.Produce},
		Topic: kafka.TopicRequested,
		Err:   kerr.InvalidRecord,
		Count: -1,
	})
	want := messages(kafka.TopicRequested, 0, 20, 3)
	b.insert(t, want...)

	ctx, cancel := context.WithTimeout(context.Background(), testkit.DefaultWait)
	defer cancel()
	if err := fault.Wait(ctx, 3); err != nil { // the relay tried, and retried
		t.Fatalf("waiting for failed produce requests: %v", err)
	}
	testkit.Eventually(t, "publish errors to be counted", func() bool { return testutil.ToFloat64(r.m.publishErrors) >= 1 })
	if n := b.outboxRows(t); n != len(want) {
		t.Fatalf("outbox holds %d rows while Kafka refuses them, want %d", n, len(want))
	}
	if got := testutil.ToFloat64(r.m.published); got != 0 {
		t.Errorf("records published while Kafka refuses them = %v, want 0", got)
	}

	fault.Remove()
	got := b.consume(t, kafka.TopicRequested, len(want))
	b.waitEmpty(t)
	if diff := cmp.Diff(byKey(want), byKey(got)); diff != "" {
		t.Errorf("records published after Kafka recovered, per key (-want +got):\n%s", diff)
	}
}

func TestReadyWithoutDatabase(t *testing.T) {
	t.Parallel()
	r := New(Config{}, nil, nil, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err := r.Ready(context.Background()); !errors.Is(err, ErrNotConnected) {
		t.Errorf("Ready before Run = %v, want ErrNotConnected", err)
	}
}

// BenchmarkIdleLatency measures the time from an outbox commit to the record
// being readable on Kafka when the relay is idle: one row at a time.
func BenchmarkIdleLatency(b *testing.B) {
	url := pgtest.NewDB(b)
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	cluster := kafkatest.New(b, 1, kafka.Topics())
	logger := slog.New(slog.DiscardHandler)
	kc, err := kafka.NewClient(cluster.Brokers(), logger, ProducerOpts(5*time.Second)...)
	if err != nil {
		b.Fatal(err)
	}
	defer kc.Close()
	r := New(Config{DatabaseURL: url, BatchSize: 500, PollInterval: 500 * time.Millisecond,
		LockRetry: time.Second, BacklogInterval: time.Second}, pool, kc, logger, prometheus.NewRegistry())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	defer func() { cancel(); <-done }()
	testkit.Eventually(b, "the relay to lead", r.Leader)
	cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.Brokers()...), kgo.ConsumeTopics(kafka.TopicRequested),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(10*time.Millisecond))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()

	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		err := postgres.InTx(ctx, pool, func(tx pgx.Tx) error {
			return outbox.Insert(ctx, tx, kafka.TopicRequested, kafka.UserKey(1), []byte(fmt.Sprint(i)))
		})
		if err != nil {
			b.Fatal(err)
		}
		for n := 0; n == 0; {
			fs := cl.PollFetches(ctx)
			n = fs.NumRecords()
		}
	}
}

// TestRelayCarriesTheTraceIntoHeaders: a row written inside a traced
// request is produced with that trace's traceparent header (kotel's publish
// span; without a tracer provider it is the stored context itself), and a
// row written without one gets no header.
func TestRelayCarriesTheTraceIntoHeaders(t *testing.T) {
	t.Parallel()
	_, b := setup(t, 1)
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	traced := obs.WithTraceParent(context.Background(), tp)
	for _, ctx := range []context.Context{traced, context.Background()} {
		err := postgres.InTx(ctx, b.pool, func(tx pgx.Tx) error {
			return outbox.Insert(ctx, tx, kafka.TopicRequested, kafka.UserKey(1), []byte("p"))
		})
		if err != nil {
			t.Fatal(err)
		}
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(b.cluster.Brokers()...), kgo.ConsumeTopics(kafka.TopicRequested),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), testkit.DefaultWait)
	defer cancel()
	var headers []string
	for len(headers) < 2 && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			h := "none"
			for _, kv := range r.Headers {
				if kv.Key == "traceparent" {
					h = string(kv.Value)
				}
			}
			headers = append(headers, h)
		})
	}
	if diff := cmp.Diff([]string{tp, "none"}, headers); diff != "" {
		t.Errorf("traceparent headers (-want +got):\n%s", diff)
	}
}

// TestSessionConfig connects as the leader's session does and wants it
// named outbox-relay, or as its URL says.
func TestSessionConfig(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.NewDB(t)
	for _, tc := range []struct{ url, wantName string }{
		{url, "outbox-relay"},
		{url + "&application_name=relay-b", "relay-b"},
	} {
		cfg, err := sessionConfig(tc.url)
		if err != nil {
			t.Fatal(err)
		}
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		var name string
		err = conn.QueryRow(ctx, `SELECT current_setting('application_name')`).Scan(&name)
		_ = conn.Close(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if name != tc.wantName {
			t.Errorf("%s: application_name %q, want %q", tc.url, name, tc.wantName)
		}
	}
	if _, err := sessionConfig("postgres://host:notaport/db"); err == nil {
		t.Error("a bad URL parsed")
	}
}
