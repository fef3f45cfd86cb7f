package consumer

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/finsvc/finance/pkg/kafka"
	"github.com/finsvc/finance/pkg/kafkatest"
	"github.com/finsvc/finance/pkg/payment"
	"github.com/finsvc/finance/pkg/pgtest"
	"github.com/finsvc/finance/pkg/testkit"
	financev1 "github.com/finsvc/finance/proto/finance/v1"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

const (
	merchantID = 2
	startBal   = 10000
)

// fixture is a payment accepted by the gateway, as its transaction leaves it:
// the hold reserved on the wallet and the accepted transition recorded.
type fixture struct {
	paymentID, userID, amount int64
}

// paymentState and walletState are what the tests check in PostgreSQL.
type paymentState struct {
	Status        string
	Hold          int64
	FailureReason string
	Entries       int
}

type walletState struct {
	Balance, Held, EventSeq int64
}

// transition is a payment_transitions row.
type transition struct {
	UserSeq  int64
	From, To string
	Actor    string
	Reason   string
}

// acceptedAt is the gateway's transition of a seeded payment, numbered seq.
func acceptedAt(seq int64) transition { return transition{seq, "", "accepted", "gateway", ""} }

const (
	processing = financev1.OutcomeStatus_OUTCOME_STATUS_PROCESSING
	succeeded  = financev1.OutcomeStatus_OUTCOME_STATUS_SUCCEEDED
	failed     = financev1.OutcomeStatus_OUTCOME_STATUS_FAILED
	unknown    = financev1.OutcomeStatus_OUTCOME_STATUS_UNKNOWN
)

// input is one record sent to payments.outcomes: an outcome, or raw bytes.
type input struct {
	outcome *financev1.PaymentOutcome
	raw     []byte
	key     int64 // record key (a user id); 0 means the outcome's user
}

// withKey sends in keyed by user key, so that it lands on that user's partition.
func withKey(key int64, in input) input {
	in.key = key
	return in
}

func outcome(paymentID, userID int64, s financev1.OutcomeStatus, reason string) input {
	return input{outcome: &financev1.PaymentOutcome{PaymentId: paymentID, PaymentUid: uidOf(paymentID).String(),
		UserId: userID, Status: s, Reason: reason, Attempts: 1}}
}

// uidOf is the uid of test payment id, derived from the id.
func uidOf(paymentID int64) uuid.UUID {
	return uuid.NewSHA1(uuid.NameSpaceOID, []byte(strconv.FormatInt(paymentID, 10)))
}

func event(paymentID, userID, amount int64, status, reason string, bal, held, seq int64) *financev1.PaymentEvent {
	return &financev1.PaymentEvent{
		EventId: fmt.Sprintf("%d:%s", paymentID, status), PaymentId: paymentID, PaymentUid: uidOf(paymentID).String(), UserId: userID,
		MerchantId: merchantID, Amount: amount, Status: status, Reason: reason,
		Balance: bal, Held: held, UserSeq: seq,
	}
}

func TestConsumer(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		payments []fixture
		// preApplied outcomes are applied straight to PostgreSQL before the
		// consumer starts: a previous run that committed but never emitted.
		preApplied   []Outcome
		inputs       []input
		wantEvents   []*financev1.PaymentEvent // every event, in order (all share one user, so one partition)
		wantPayments map[int64]paymentState
		wantWallets  map[int64]walletState
		// wantTransitions, when set, are the audit rows, per payment.
		wantTransitions map[int64][]transition
		wantRejected    map[string]float64
		wantNoops       map[string]float64
	}{
		{
			name:       "succeeded settles, releases the hold and emits",
			payments:   []fixture{{100000, 7, -3000}},
			inputs:     []input{outcome(100000, 7, succeeded, "")},
			wantEvents: []*financev1.PaymentEvent{event(100000, 7, -3000, "succeeded", "", 7000, 0, 2)},
			wantPayments: map[int64]paymentState{
				100000: {Status: "succeeded", Entries: 1},
			},
			wantWallets: map[int64]walletState{7: {7000, 0, 2}},
		},
		{
			name:       "failed releases the hold without an entry",
			payments:   []fixture{{100000, 7, -3000}},
			inputs:     []input{outcome(100000, 7, failed, "declined: insufficient funds at processor")},
			wantEvents: []*financev1.PaymentEvent{event(100000, 7, -3000, "failed", "declined: insufficient funds at processor", startBal, 0, 2)},
			wantPayments: map[int64]paymentState{
				100000: {Status: "failed", FailureReason: "declined: insufficient funds at processor"},
			},
			wantWallets: map[int64]walletState{7: {startBal, 0, 2}},
			wantTransitions: map[int64][]transition{100000: {acceptedAt(1),
				{2, "accepted", "failed", Actor, "declined: insufficient funds at processor"}}},
		},
		{
			name:     "the same outcome twice settles once and emits the same event twice",
			payments: []fixture{{100000, 7, -3000}},
			inputs:   []input{outcome(100000, 7, succeeded, ""), outcome(100000, 7, succeeded, "")},
			wantEvents: []*financev1.PaymentEvent{
				event(100000, 7, -3000, "succeeded", "", 7000, 0, 2),
				event(100000, 7, -3000, "succeeded", "", 7000, 0, 2),
			},
			wantPayments: map[int64]paymentState{100000: {Status: "succeeded", Entries: 1}},
			wantWallets:  map[int64]walletState{7: {7000, 0, 2}},
			wantTransitions: map[int64][]transition{100000: {acceptedAt(1),
				{2, "accepted", "succeeded", Actor, ""}}},
			wantNoops: map[string]float64{"duplicate": 1},
		},
		{
			name:       "an outcome committed but never emitted is emitted on redelivery",
			payments:   []fixture{{100000, 7, -3000}},
			preApplied: []Outcome{{PaymentID: 100000, UserID: 7, Status: payment.StatusSucceeded}},
			inputs:     []input{outcome(100000, 7, succeeded, "")},
			wantEvents: []*financev1.PaymentEvent{event(100000, 7, -3000, "succeeded", "", 7000, 0, 2)},
			wantPayments: map[int64]paymentState{
				100000: {Status: "succeeded", Entries: 1},
			},
			wantWallets: map[int64]walletState{7: {7000, 0, 2}},
			wantNoops:   map[string]float64{"duplicate": 1},
		},
		{
			// The last payment's outcome comes after the late one on the same
			// partition: its event proves the late one emitted nothing.
			name:     "processing then succeeded; a late processing is ignored",
			payments: []fixture{{100000, 7, -3000}, {100001, 7, -1000}},
			inputs: []input{
				outcome(100000, 7, processing, ""),
				outcome(100000, 7, succeeded, ""),
				outcome(100000, 7, processing, ""),
				outcome(100001, 7, failed, "declined"),
			},
			wantEvents: []*financev1.PaymentEvent{
				event(100000, 7, -3000, "processing", "", startBal, 4000, 3),
				event(100000, 7, -3000, "succeeded", "", 7000, 1000, 4),
				event(100001, 7, -1000, "failed", "declined", 7000, 0, 5),
			},
			wantPayments: map[int64]paymentState{
				100000: {Status: "succeeded", Entries: 1},
				100001: {Status: "failed", FailureReason: "declined"},
			},
			wantWallets: map[int64]walletState{7: {7000, 0, 5}},
			wantTransitions: map[int64][]transition{
				100000: {acceptedAt(1), {3, "accepted", "processing", Actor, ""}, {4, "processing", "succeeded", Actor, ""}},
				100001: {acceptedAt(2), {5, "accepted", "failed", Actor, "declined"}},
			},
			wantNoops: map[string]float64{"out_of_order": 1},
		},
		{
			name:       "unknown keeps the hold",
			payments:   []fixture{{100000, 7, -3000}},
			inputs:     []input{outcome(100000, 7, unknown, "processor timed out after 3 attempts")},
			wantEvents: []*financev1.PaymentEvent{event(100000, 7, -3000, "unknown", "processor timed out after 3 attempts", startBal, 3000, 2)},
			wantPayments: map[int64]paymentState{
				100000: {Status: "unknown", Hold: 3000, FailureReason: "processor timed out after 3 attempts"},
			},
			wantWallets: map[int64]walletState{7: {startBal, 3000, 2}},
			wantTransitions: map[int64][]transition{100000: {acceptedAt(1),
				{2, "accepted", "unknown", Actor, "processor timed out after 3 attempts"}}},
		},
		{
			name:     "dead-lettered records are counted and do not block the partition",
			payments: []fixture{{100000, 7, -3000}},
			inputs: []input{
				{raw: []byte("not a protobuf"), key: 7},
				outcome(424242, 7, succeeded, ""),                                          // no such payment
				outcome(100000, 7, financev1.OutcomeStatus_OUTCOME_STATUS_UNSPECIFIED, ""), // no status
				withKey(7, outcome(100000, 8, succeeded, "")),                              // someone else's payment
				withKey(7, outcome(100000, 0, succeeded, "")),                              // no user: invalid, never applied unchecked
				outcome(100000, 7, succeeded, ""),
			},
			wantEvents:   []*financev1.PaymentEvent{event(100000, 7, -3000, "succeeded", "", 7000, 0, 2)},
			wantPayments: map[int64]paymentState{100000: {Status: "succeeded", Entries: 1}},
			wantWallets:  map[int64]walletState{7: {7000, 0, 2}},
			wantRejected: map[string]float64{
				rejectUndecodable: 1, rejectUnknownPayment: 1, rejectInvalid: 2, rejectUserMismatch: 1,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, h := setup(t)
			h.seed(t, tt.payments...)
			for _, o := range tt.preApplied {
				if _, err := applyOutcome(context.Background(), h.pool, o); err != nil {
					t.Fatal(err)
				}
			}
			h.send(t, tt.inputs...)

			got := h.events(t, len(tt.wantEvents))
			if diff := cmp.Diff(tt.wantEvents, got, protocmp.Transform(),
				protocmp.IgnoreFields(&financev1.PaymentEvent{}, "occurred_at")); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
			for _, ev := range got {
				if !ev.GetOccurredAt().IsValid() || ev.GetOccurredAt().AsTime().IsZero() {
					t.Errorf("event %s has no occurred_at", ev.GetEventId())
				}
			}
			// Events are emitted after the PostgreSQL commit: the state is final.
			if diff := cmp.Diff(tt.wantPayments, h.payments(t)); diff != "" {
				t.Errorf("payments (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantWallets, h.wallets(t)); diff != "" {
				t.Errorf("wallets (-want +got):\n%s", diff)
			}
			if tt.wantTransitions != nil {
				if diff := cmp.Diff(tt.wantTransitions, h.transitions(t)); diff != "" {
					t.Errorf("transitions (-want +got):\n%s", diff)
				}
			}
			for reason, want := range tt.wantRejected {
				if got := testutil.ToFloat64(c.m.rejected.WithLabelValues(reason)); got != want {
					t.Errorf("rejected{reason=%q} = %v, want %v", reason, got, want)
				}
			}
			for reason, want := range tt.wantNoops {
				if got := testutil.ToFloat64(c.m.noops.WithLabelValues(reason)); got != want {
					t.Errorf("noops{reason=%q} = %v, want %v", reason, got, want)
				}
			}
		})
	}
}

func TestConsumerProcessesPartitionsIndependently(t *testing.T) {
	t.Parallel()
	c, h := setup(t)
	const users = 12
	var (
		fixtures []fixture
		inputs   []input
	)
	for u := int64(1); u <= users; u++ {
		id := 100000 + u
		fixtures = append(fixtures, fixture{id, u, -100 * u})
		inputs = append(inputs, outcome(id, u, processing, ""), outcome(id, u, succeeded, ""))
	}
	h.seed(t, fixtures...)
	h.send(t, inputs...)

	got := h.events(t, 2*users)
	perUser := map[int64][]string{}
	for _, ev := range got {
		perUser[ev.GetUserId()] = append(perUser[ev.GetUserId()], fmt.Sprintf("%s@%d", ev.GetEventId(), ev.GetUserSeq()))
	}
	wantPerUser := map[int64][]string{}
	wantWallets := map[int64]walletState{}
	for u := int64(1); u <= users; u++ {
		id := 100000 + u
		wantPerUser[u] = []string{fmt.Sprintf("%d:processing@2", id), fmt.Sprintf("%d:succeeded@3", id)}
		wantWallets[u] = walletState{startBal - 100*u, 0, 3}
	}
	if diff := cmp.Diff(wantPerUser, perUser); diff != "" {
		t.Errorf("events per user (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(wantWallets, h.wallets(t)); diff != "" {
		t.Errorf("wallets (-want +got):\n%s", diff)
	}
	if got := testutil.ToFloat64(c.m.applied.WithLabelValues("succeeded")); got != users {
		t.Errorf("applied{status=succeeded} = %v, want %d", got, users)
	}
}

func TestConsumerResumesFromCommittedOffsets(t *testing.T) {
	t.Parallel()
	first, h := setup(t)
	h.seed(t, fixture{100000, 7, -3000}, fixture{100001, 7, -1000})

	h.send(t, outcome(100000, 7, succeeded, ""))
	h.events(t, 1)
	h.stop(t, first) // graceful: commits, leaves the group

	second := h.start(t)
	h.send(t, outcome(100001, 7, succeeded, ""))
	got := h.events(t, 1)
	if id := got[0].GetEventId(); id != "100001:succeeded" {
		t.Errorf("after restart, first event = %s, want 100001:succeeded (the committed outcome was consumed again)", id)
	}
	if got := testutil.ToFloat64(second.m.noops.WithLabelValues("duplicate")); got != 0 {
		t.Errorf("after restart, duplicates = %v, want 0", got)
	}
}

func TestConsumerRebalanceLosesAndRepeatsNothing(t *testing.T) {
	t.Parallel()
	a, h := setup(t)
	const users = 8
	var fixtures []fixture
	for u := int64(1); u <= users; u++ {
		fixtures = append(fixtures, fixture{100000 + u, u, -10})
	}
	h.seed(t, fixtures...)

	for u := int64(1); u <= users; u++ {
		h.send(t, outcome(100000+u, u, processing, ""))
	}
	h.events(t, users)
	b := h.start(t) // joins the group: partitions move from a to b
	for u := int64(1); u <= users; u++ {
		h.send(t, outcome(100000+u, u, succeeded, ""))
	}
	// Each user's succeeded outcome is the last record of its partition, so
	// once every succeeded event is out, any redelivery would have happened.
	got := h.events(t, users)
	for _, ev := range got {
		if ev.GetStatus() != "succeeded" {
			t.Errorf("event %s after the rebalance, want only succeeded events", ev.GetEventId())
		}
	}
	var applied, dups float64
	for _, c := range []*Consumer{a, b} {
		applied += testutil.ToFloat64(c.m.applied.WithLabelValues("succeeded"))
		dups += testutil.ToFloat64(c.m.noops.WithLabelValues("duplicate"))
	}
	if applied != users || dups != 0 {
		t.Errorf("succeeded applied %v times with %v duplicates, want %d and 0", applied, dups, users)
	}
}

func TestConsumerEmitsOnceKafkaAcceptsEvents(t *testing.T) {
	t.Parallel()
	// Give up quickly: the partition is rewound and the record fetched again.
	c, h := setup(t, retryFor(300*time.Millisecond))
	h.seed(t, fixture{100000, 7, -3000})
	fault := h.refuseProduce(kafka.TopicEvents)
	h.send(t, outcome(100000, 7, succeeded, ""))

	// The consumer retries, gives up, rewinds the partition and fetches the
	// outcome again, which then finds it applied in PostgreSQL.
	testkit.Eventually(t, "the outcome to be deferred", func() bool {
		return testutil.ToFloat64(c.m.deferred.WithLabelValues("emit")) >= 1
	})
	fault.Remove()

	got := h.events(t, 1)
	want := []*financev1.PaymentEvent{event(100000, 7, -3000, "succeeded", "", 7000, 0, 2)}
	if diff := cmp.Diff(want, got, protocmp.Transform(),
		protocmp.IgnoreFields(&financev1.PaymentEvent{}, "occurred_at")); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[int64]walletState{7: {7000, 0, 2}}, h.wallets(t)); diff != "" {
		t.Errorf("wallets (-want +got):\n%s", diff)
	}
	if got := testutil.ToFloat64(c.m.errors.WithLabelValues("emit")); got < 1 {
		t.Errorf("errors{stage=emit} = %v, want at least 1", got)
	}
	if got := testutil.ToFloat64(c.m.applied.WithLabelValues("succeeded")); got != 1 {
		t.Errorf("applied{status=succeeded} = %v, want 1", got)
	}
	// Counted once the produce returns, which may be just after the test read the event.
	testkit.Eventually(t, "the replayed event to be counted", func() bool {
		return testutil.ToFloat64(c.m.events.WithLabelValues("true")) == 1
	})
}

// TestConsumerCountsDeferralsOfTheHeadRecord: a record deferred again and
// again shows on status_consumer_record_deferrals of its partition, one more
// each time, and back to 0 once it is processed.
func TestConsumerCountsDeferralsOfTheHeadRecord(t *testing.T) {
	t.Parallel()
	c, h := setup(t, retryFor(200*time.Millisecond))
	h.seed(t, fixture{100000, 7, -3000})
	fault := h.refuseProduce(kafka.TopicEvents)
	sent := h.send(t, outcome(100000, 7, succeeded, ""))
	gauge := c.m.headDeferrals.WithLabelValues(strconv.Itoa(int(sent[0].Partition)))

	testkit.Eventually(t, "three deferrals in a row", func() bool { return testutil.ToFloat64(gauge) >= 3 })
	if n := testutil.ToFloat64(c.m.deferred.WithLabelValues("emit")); n < 3 {
		t.Errorf("deferred{stage=emit} = %v with the head deferred 3 times in a row", n)
	}
	fault.Remove()

	h.events(t, 1)
	testkit.Eventually(t, "the head record's deferrals to reset", func() bool { return testutil.ToFloat64(gauge) == 0 })
}

// setup is every test's start: a harness, and a consumer running on it
// until the test ends (h.start runs more). opts adjust the config of every
// consumer of the harness.
func setup(t *testing.T, opts ...func(*Config)) (*Consumer, *harness) {
	t.Helper()
	h := newHarness(t, opts...)
	return h.start(t), h
}

// retryFor is a setup option: a record is given up on (and fetched again)
// after d instead of 5 s.
func retryFor(d time.Duration) func(*Config) {
	return func(cfg *Config) { cfg.RetryTimeout = d }
}

// harness is one test's PostgreSQL database, Kafka cluster and clients.
type harness struct {
	pool    *pgxpool.Pool
	cluster *kafkatest.Cluster
	out     *kgo.Client // produces outcomes
	in      *kgo.Client // reads events

	opts []func(*Config)

	mu      sync.Mutex
	running map[*Consumer]func()
}

func newHarness(t testing.TB, opts ...func(*Config)) *harness {
	t.Helper()
	h := &harness{
		pool:    pgtest.NewPool(t),
		cluster: kafkatest.New(t, 4, append(kafka.Topics(), kafka.DLQTopics()...)),
		running: map[*Consumer]func(){},
		opts:    opts,
	}
	var err error
	h.out, err = kgo.NewClient(kgo.SeedBrokers(h.cluster.Brokers()...), kgo.DefaultProduceTopic(kafka.TopicOutcomes))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.out.Close)
	h.in, err = kgo.NewClient(kgo.SeedBrokers(h.cluster.Brokers()...), kgo.ConsumeTopics(kafka.TopicEvents),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.in.Close)
	if _, err := h.pool.Exec(context.Background(), `INSERT INTO merchants (id, name) VALUES (1, 'Pleo'), (2, 'Apple')`); err != nil {
		t.Fatal(err)
	}
	return h
}

// refuseProduce makes every produce to topic fail, with an error the client
// does not retry, until the returned fault is removed.
func (h *harness) refuseProduce(topic string) *kfake.FaultHandle {
	return h.cluster.Fault(kfake.Fault{
		Keys:  []kmsg.Key{kmsg.Produce},
		Topic: topic,
		Err:   kerr.InvalidRecord,
		Count: -1,
	})
}

// seed writes each payment as the gateway leaves it: the wallet (balance
// 10000) created on first use, the hold reserved, the accepted transition
// numbered with the wallet's next event_seq.
func (h *harness) seed(t *testing.T, fs ...fixture) {
	t.Helper()
	ctx := context.Background()
	for _, f := range fs {
		hold := payment.HoldFor(f.amount)
		b := &pgx.Batch{}
		b.Queue(`INSERT INTO wallets (user_id, balance) VALUES ($1, $2) ON CONFLICT DO NOTHING`, f.userID, startBal)
		b.Queue(`INSERT INTO payments (id, uid, user_id, merchant_id, amount, status, idempotency_key, request_hash, hold)
			VALUES ($1, $2, $3, $4, $5, 'accepted', $6, 'h', $7)`, f.paymentID, uidOf(f.paymentID), f.userID, merchantID, f.amount, fmt.Sprint("k-", f.paymentID), hold)
		b.Queue(`WITH w AS (
				UPDATE wallets SET held = held + $3, event_seq = event_seq + 1 WHERE user_id = $2 RETURNING event_seq)
			INSERT INTO payment_transitions (payment_id, user_id, user_seq, from_status, to_status, actor)
			SELECT $1, $2, event_seq, '', 'accepted', 'gateway' FROM w`, f.paymentID, f.userID, hold)
		if err := h.pool.SendBatch(ctx, b).Close(); err != nil {
			t.Fatalf("seed payment %d: %v", f.paymentID, err)
		}
	}
}

// start runs a consumer on the harness until the test ends or stop.
func (h *harness) start(t testing.TB) *Consumer {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg := Config{
		Brokers:        h.cluster.Brokers(),
		MaxPollRecords: 100,
		RetryTimeout:   5 * time.Second,
		AttemptTimeout: 5 * time.Second,
	}
	for _, opt := range h.opts {
		opt(&cfg)
	}
	c, err := New(cfg, h.pool, logger, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
			c.Close()
		})
	}
	h.mu.Lock()
	h.running[c] = stop
	h.mu.Unlock()
	t.Cleanup(stop)
	return c
}

func (h *harness) stop(t testing.TB, c *Consumer) {
	t.Helper()
	h.mu.Lock()
	stop := h.running[c]
	h.mu.Unlock()
	stop()
}

// send produces inputs in order, each keyed by its user, and returns the
// produced records (with their partitions and offsets).
func (h *harness) send(t testing.TB, inputs ...input) []*kgo.Record {
	t.Helper()
	var sent []*kgo.Record
	for _, in := range inputs {
		rec := &kgo.Record{Key: kafka.UserKey(in.key), Value: in.raw}
		if in.outcome != nil {
			v, err := proto.Marshal(in.outcome)
			if err != nil {
				t.Fatal(err)
			}
			rec.Value = v
			if in.key == 0 {
				rec.Key = kafka.UserKey(in.outcome.GetUserId())
			}
		}
		if err := h.out.ProduceSync(context.Background(), rec).FirstErr(); err != nil {
			t.Fatalf("produce outcome: %v", err)
		}
		sent = append(sent, rec)
	}
	return sent
}

// events reads the next n events from payments.events.
func (h *harness) events(t *testing.T, n int) []*financev1.PaymentEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testkit.DefaultWait)
	defer cancel()
	var got []*financev1.PaymentEvent
	for len(got) < n {
		fs := h.in.PollRecords(ctx, n-len(got))
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d events before the deadline", len(got), n)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			var ev financev1.PaymentEvent
			if err := proto.Unmarshal(r.Value, &ev); err != nil {
				t.Fatalf("decode event: %v", err)
			}
			if want := string(kafka.UserKey(ev.GetUserId())); string(r.Key) != want {
				t.Errorf("event %s keyed %q, want %q", ev.GetEventId(), r.Key, want)
			}
			got = append(got, &ev)
		})
	}
	return got
}

func (h *harness) payments(t *testing.T) map[int64]paymentState {
	t.Helper()
	rows, err := h.pool.Query(context.Background(), `
		SELECT p.id, p.status, p.hold, p.failure_reason, count(e.id)
		FROM payments p LEFT JOIN entries e ON e.payment_id = p.id
		GROUP BY p.id`)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int64]paymentState{}
	var (
		id int64
		s  paymentState
	)
	_, err = pgx.ForEachRow(rows, []any{&id, &s.Status, &s.Hold, &s.FailureReason, &s.Entries}, func() error {
		out[id] = s
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (h *harness) transitions(t *testing.T) map[int64][]transition {
	t.Helper()
	rows, err := h.pool.Query(context.Background(), `
		SELECT payment_id, user_seq, from_status, to_status, actor, reason
		FROM payment_transitions ORDER BY payment_id, user_seq`)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int64][]transition{}
	var (
		id int64
		tr transition
	)
	_, err = pgx.ForEachRow(rows, []any{&id, &tr.UserSeq, &tr.From, &tr.To, &tr.Actor, &tr.Reason}, func() error {
		out[id] = append(out[id], tr)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (h *harness) wallets(t *testing.T) map[int64]walletState {
	t.Helper()
	rows, err := h.pool.Query(context.Background(), `SELECT user_id, balance, held, event_seq FROM wallets`)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int64]walletState{}
	var (
		id int64
		w  walletState
	)
	_, err = pgx.ForEachRow(rows, []any{&id, &w.Balance, &w.Held, &w.EventSeq}, func() error {
		out[id] = w
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
