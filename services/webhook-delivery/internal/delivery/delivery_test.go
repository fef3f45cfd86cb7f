package delivery_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/finsvc/finance/pkg/kafka"
	"github.com/finsvc/finance/pkg/kafkatest"
	"github.com/finsvc/finance/pkg/ledger"
	"github.com/finsvc/finance/pkg/payment"
	"github.com/finsvc/finance/pkg/pgtest"
	"github.com/finsvc/finance/pkg/testkit"
	"github.com/finsvc/finance/pkg/webhook"
	"github.com/finsvc/finance/pkg/wire"
	"github.com/finsvc/finance/services/webhook-delivery/internal/delivery"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

const (
	dlqTopic = "payments.webhooks.dlq"
	opsTopic = "payments.webhooks.ops"
)

type bundle struct {
	db       *pgxpool.Pool
	cluster  *kafkatest.Cluster
	producer *kgo.Client
	cfg      delivery.Config
}

// setup starts a migrated database, a broker and, unless start is false, the
// service with a short retry schedule; mod changes the configuration first.
func setup(t *testing.T, mod func(*delivery.Config)) *bundle { return setupB(t, mod) }

// setupB is setup for tests and benchmarks.
func setupB(t testing.TB, mod func(*delivery.Config)) *bundle {
	t.Helper()
	b := &bundle{db: pgtest.NewPool(t), cluster: kafkatest.New(t, 4, []string{kafka.TopicEvents, dlqTopic, opsTopic})}
	b.cfg = delivery.Config{
		Brokers:             b.cluster.Brokers(),
		DLQTopic:            dlqTopic,
		OpsTopic:            opsTopic,
		MaxPollRecords:      500,
		Schedule:            []time.Duration{0, 20 * time.Millisecond, 20 * time.Millisecond, 20 * time.Millisecond},
		Timeout:             2 * time.Second,
		Lease:               10 * time.Second,
		MaxInFlight:         64,
		EndpointConcurrency: 4,
		BreakerFailures:     1000,
		BreakerOpen:         time.Second,
		PollInterval:        20 * time.Millisecond,
		ResponseLogBytes:    64,
		Policy:              webhook.Policy{AllowHTTP: true, Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}},
	}
	if mod != nil {
		mod(&b.cfg)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	svc, err := delivery.New(b.cfg, b.db, logger, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = svc.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; svc.Close() })

	b.producer, err = kafka.NewClient(b.cluster.Brokers(), logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.producer.Close)
	return b
}

// endpoint registers url for the given types (all when none) and user
// filter (0 = every user) and returns its id and secret.
func (b *bundle) endpoint(t *testing.T, url string, user int64, types ...string) (uuid.UUID, webhook.Secret) {
	return b.endpointB(t, url, user, types...)
}

func (b *bundle) endpointB(t testing.TB, url string, user int64, types ...string) (uuid.UUID, webhook.Secret) {
	t.Helper()
	s := webhook.NewSecret()
	var uf *int64
	if user != 0 {
		uf = &user
	}
	if types == nil {
		types = []string{}
	}
	var id uuid.UUID
	err := b.db.QueryRow(context.Background(), `INSERT INTO webhook_endpoints (url, event_types, user_id, secret)
		VALUES ($1, $2, $3, $4) RETURNING id`, url, types, uf, s.Reveal()).Scan(&id)
	if err != nil {
		t.Fatal(err)
	}
	return id, s
}

// publish produces events as the status consumer does.
func (b *bundle) publish(t *testing.T, evs ...ledger.Event) { b.publishB(t, evs...) }

func (b *bundle) publishB(t testing.TB, evs ...ledger.Event) {
	t.Helper()
	recs := make([]*kgo.Record, len(evs))
	for i, ev := range evs {
		v, err := wire.EncodeEvent(ev)
		if err != nil {
			t.Fatal(err)
		}
		recs[i] = &kgo.Record{Topic: kafka.TopicEvents, Key: kafka.UserKey(ev.UserID), Value: v}
	}
	if err := b.producer.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

func (b *bundle) count(t *testing.T, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := b.db.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func event(paymentID, user, seq int64, st payment.Status) ledger.Event {
	return ledger.Event{PaymentID: paymentID, PaymentUID: uuid.New(), UserID: user, MerchantID: 1, Amount: -100,
		Status: st, UserSeq: seq, OccurredAt: time.Now()}
}

// receiver is an httptest server that records what it accepted and answers
// as answer says (nil: 200).
type receiver struct {
	*httptest.Server
	mu       sync.Mutex
	got      []webhook.Payload // the bodies it answered 2xx to, in order
	calls    int
	verifier *webhook.Verifier
	badSigs  int
}

func newReceiver(t *testing.T, answer func(call int, p webhook.Payload) int) *receiver {
	t.Helper()
	r := &receiver{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		var p webhook.Payload
		_ = json.Unmarshal(body, &p)
		r.mu.Lock()
		r.calls++
		call := r.calls
		v := r.verifier
		r.mu.Unlock()
		if v != nil && v.Verify(req.Header, body) != nil {
			r.mu.Lock()
			r.badSigs++
			r.mu.Unlock()
		}
		code := http.StatusOK
		if answer != nil {
			code = answer(call, p)
		}
		if code >= 200 && code < 300 {
			r.mu.Lock()
			r.got = append(r.got, p)
			r.mu.Unlock()
		}
		w.WriteHeader(code)
		_, _ = io.WriteString(w, "answer "+http.StatusText(code))
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) accepted() []webhook.Payload {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]webhook.Payload(nil), r.got...)
}

func (r *receiver) verifyWith(t *testing.T, s webhook.Secret) {
	t.Helper()
	v, err := webhook.NewVerifier(s.Reveal())
	if err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	r.verifier = v
	r.mu.Unlock()
}

// A receiver that fails three times and then answers 200 gets the event on
// the fourth attempt, every attempt is logged with its status and the
// answer's first bytes, and every request is correctly signed.
func TestRetriesUntilTheReceiverSucceeds(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	rcv := newReceiver(t, func(call int, _ webhook.Payload) int {
		if call <= 3 {
			return http.StatusServiceUnavailable
		}
		return http.StatusNoContent
	})
	id, secret := b.endpoint(t, rcv.URL, 0)
	rcv.verifyWith(t, secret)
	b.publish(t, event(100, 7, 1, payment.StatusSucceeded))

	testkit.Eventually(t, "the message delivered", func() bool {
		return b.count(t, `SELECT count(*) FROM webhook_messages WHERE state = 'delivered'`) == 1
	})
	got := rcv.accepted()
	if len(got) != 1 || got[0].ID != "100:succeeded" || got[0].Type != webhook.TypeSucceeded || got[0].Data.UserSeq != 1 {
		t.Errorf("accepted %+v", got)
	}
	rows, err := b.db.Query(context.Background(), `SELECT attempt, status_code, response FROM webhook_attempts WHERE endpoint_id = $1 ORDER BY id`, id)
	if err != nil {
		t.Fatal(err)
	}
	var log []string
	for rows.Next() {
		var n, code int
		var resp string
		if err := rows.Scan(&n, &code, &resp); err != nil {
			t.Fatal(err)
		}
		log = append(log, strings.Join([]string{http.StatusText(code), resp}, "|"))
		if n != len(log) {
			t.Errorf("attempt %d numbered %d", len(log), n)
		}
	}
	want := []string{"Service Unavailable|answer Service Unavailable", "Service Unavailable|answer Service Unavailable",
		"Service Unavailable|answer Service Unavailable", "No Content|"} // a 204 has no body
	if strings.Join(log, "\n") != strings.Join(want, "\n") {
		t.Errorf("delivery log:\n%s\nwant:\n%s", strings.Join(log, "\n"), strings.Join(want, "\n"))
	}
	if rcv.badSigs != 0 {
		t.Errorf("%d requests failed signature verification", rcv.badSigs)
	}
}

// A dead receiver beside a healthy one: the healthy one gets every event;
// the dead one's messages are given up after the schedule, go to the DLQ,
// and the endpoint, which delivered nothing, is disabled.
func TestDeadReceiverBesideAHealthyOne(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *delivery.Config) { c.BreakerFailures = 3; c.BreakerOpen = 50 * time.Millisecond })
	healthy := newReceiver(t, nil)
	dead := newReceiver(t, func(int, webhook.Payload) int { return http.StatusInternalServerError })
	b.endpoint(t, healthy.URL, 0)
	deadID, _ := b.endpoint(t, dead.URL, 0)
	const n = 50
	var evs []ledger.Event
	for i := range int64(n) {
		evs = append(evs, event(1000+i, 1+i%5, 1+i/5, payment.StatusSucceeded))
	}
	b.publish(t, evs...)

	testkit.Eventually(t, "the healthy receiver got every event", func() bool { return len(healthy.accepted()) == n })
	testkit.Eventually(t, "the dead endpoint disabled", func() bool {
		return b.count(t, `SELECT count(*) FROM webhook_endpoints WHERE id = $1 AND NOT enabled AND disabled_reason = 'failing'`, deadID) == 1
	})
	given := b.count(t, `SELECT count(*) FROM webhook_messages WHERE endpoint_id = $1 AND state = 'failed'`, deadID)
	if given == 0 {
		t.Fatal("no message of the dead endpoint was given up")
	}
	// Every given-up message is in the DLQ.
	cl, err := kafka.NewClient(b.cluster.Brokers(), slog.New(slog.NewTextHandler(io.Discard, nil)),
		kgo.ConsumeTopics(dlqTopic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	seen := 0
	testkit.Eventually(t, "the DLQ holds the given-up messages", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		seen += len(cl.PollFetches(ctx).Records())
		return seen >= given
	})
}

// A receiver that answers only after the timeout holds its own slots, not
// the others': a fast endpoint gets every event while the slow one hangs.
func TestSlowReceiverDelaysNoOther(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	b := setup(t, func(c *delivery.Config) { c.Timeout = 30 * time.Second; c.Lease = time.Minute; c.MaxInFlight = 16 })
	slow := newReceiver(t, func(int, webhook.Payload) int { <-release; return http.StatusOK })
	t.Cleanup(func() { close(release) })
	fast := newReceiver(t, nil)
	b.endpoint(t, slow.URL, 0)
	b.endpoint(t, fast.URL, 0)
	const n = 40
	var evs []ledger.Event
	for i := range int64(n) {
		evs = append(evs, event(2000+i, 1+i, 1, payment.StatusFailed)) // 40 users: 40 lanes each
	}
	b.publish(t, evs...)
	testkit.Eventually(t, "the fast receiver got every event", func() bool { return len(fast.accepted()) == n })
	slow.mu.Lock()
	calls := slow.calls
	slow.mu.Unlock()
	if calls > b.cfg.EndpointConcurrency {
		t.Errorf("the slow endpoint has %d requests open, its bound is %d", calls, b.cfg.EndpointConcurrency)
	}
}

// Per (endpoint, user), events arrive in order even when attempts fail
// and are retried: no event is accepted before an earlier one of its user.
func TestOrderPerUser(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *delivery.Config) {
		c.Schedule = []time.Duration{0, 5 * time.Millisecond, 5 * time.Millisecond, 5 * time.Millisecond, 5 * time.Millisecond}
	})
	var mu sync.Mutex
	failed := map[string]bool{}
	rcv := newReceiver(t, func(_ int, p webhook.Payload) int {
		mu.Lock()
		defer mu.Unlock()
		// Every third event fails its first attempt.
		if p.Data.ID%3 == 0 && !failed[p.ID] {
			failed[p.ID] = true
			return http.StatusBadGateway
		}
		return http.StatusOK
	})
	b.endpoint(t, rcv.URL, 0)
	const users, per = 6, 30
	var evs []ledger.Event
	for seq := int64(1); seq <= per; seq++ {
		for u := int64(1); u <= users; u++ {
			evs = append(evs, event(u*1000+seq, u, seq, payment.StatusSucceeded))
		}
	}
	b.publish(t, evs...)
	testkit.Eventually(t, "every event accepted", func() bool { return len(rcv.accepted()) == users*per })
	last := map[int64]int64{}
	for _, p := range rcv.accepted() {
		if p.Data.UserSeq != last[p.Data.UserID]+1 {
			t.Errorf("user %d: user_seq %d after %d", p.Data.UserID, p.Data.UserSeq, last[p.Data.UserID])
		}
		last[p.Data.UserID] = p.Data.UserSeq
	}
}

// 410 disables the endpoint at once: its message is failed and the next
// events are not sent.
func TestGoneDisablesTheEndpoint(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	rcv := newReceiver(t, func(int, webhook.Payload) int { return http.StatusGone })
	id, _ := b.endpoint(t, rcv.URL, 0)
	b.publish(t, event(3000, 9, 1, payment.StatusAccepted))
	testkit.Eventually(t, "the endpoint disabled as gone", func() bool {
		return b.count(t, `SELECT count(*) FROM webhook_endpoints WHERE id = $1 AND NOT enabled AND disabled_reason = 'gone'`, id) == 1
	})
	b.publish(t, event(3001, 9, 2, payment.StatusAccepted))
	testkit.Eventually(t, "the second event consumed", func() bool {
		return b.count(t, `SELECT count(*) FROM webhook_messages WHERE endpoint_id = $1`, id) >= 1
	})
	rcv.mu.Lock()
	calls := rcv.calls
	rcv.mu.Unlock()
	if calls != 1 {
		t.Errorf("the gone endpoint was called %d times, want 1", calls)
	}
	if n := b.count(t, `SELECT count(*) FROM webhook_messages WHERE endpoint_id = $1 AND state = 'failed' AND attempts = 1`, id); n != 1 {
		t.Errorf("%d failed messages, want 1", n)
	}
	got := b.opsEvents(t, 1)
	want := []delivery.OpsEvent{{Type: delivery.OpsEndpointDisabled, EndpointID: id, Reason: "gone", EventID: "3000:accepted",
		Status: http.StatusGone, LastError: "status 410"}}
	if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(delivery.OpsEvent{}, "At")); diff != "" {
		t.Errorf("ops events (-want +got):\n%s", diff)
	}
}

// TestFailingEndpointDisabledWithAnOpsEvent: an endpoint that never
// answers 2xx is disabled once a message's retries are spent, and the
// operational event is on the ops topic, keyed by the endpoint.
func TestFailingEndpointDisabledWithAnOpsEvent(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	rcv := newReceiver(t, func(int, webhook.Payload) int { return http.StatusInternalServerError })
	id, _ := b.endpoint(t, rcv.URL, 0)
	b.publish(t, event(3100, 11, 1, payment.StatusAccepted))
	testkit.Eventually(t, "the endpoint disabled as failing", func() bool {
		return b.count(t, `SELECT count(*) FROM webhook_endpoints WHERE id = $1 AND NOT enabled AND disabled_reason = 'failing'`, id) == 1
	})
	got := b.opsEvents(t, 1)
	want := []delivery.OpsEvent{{Type: delivery.OpsEndpointDisabled, EndpointID: id, Reason: "failing", EventID: "3100:accepted",
		Status: http.StatusInternalServerError, LastError: "status 500"}}
	if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(delivery.OpsEvent{}, "At")); diff != "" {
		t.Errorf("ops events (-want +got):\n%s", diff)
	}
	if got[0].At.IsZero() {
		t.Error("ops event without a time")
	}
}

// opsEvents reads the ops topic from its start until it has n records,
// each keyed by its endpoint id.
func (b *bundle) opsEvents(t *testing.T, n int) []delivery.OpsEvent {
	t.Helper()
	cl, err := kafka.NewClient(b.cluster.Brokers(), slog.New(slog.DiscardHandler),
		kgo.ConsumeTopics(opsTopic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []delivery.OpsEvent
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("ops topic: %d records, want %d", len(out), n)
		}
		fs.EachRecord(func(r *kgo.Record) {
			var e delivery.OpsEvent
			if err := json.Unmarshal(r.Value, &e); err != nil {
				t.Errorf("ops record %s: %v", r.Value, err)
			}
			if string(r.Key) != e.EndpointID.String() {
				t.Errorf("ops record key %q, want the endpoint id %s", r.Key, e.EndpointID)
			}
			out = append(out, e)
		})
	}
	return out
}

// Without an allowlist, the dialer refuses a loopback receiver at connect
// time: the receiver is never reached and the attempt says why.
func TestPrivateAddressRefusedAtConnect(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *delivery.Config) { c.Policy = webhook.Policy{AllowHTTP: true} })
	rcv := newReceiver(t, nil)
	id, _ := b.endpoint(t, rcv.URL, 0) // stored directly: registration would have refused it
	b.publish(t, event(4000, 3, 1, payment.StatusUnknown))
	testkit.Eventually(t, "a refused attempt logged", func() bool {
		return b.count(t, `SELECT count(*) FROM webhook_attempts WHERE endpoint_id = $1 AND status_code = 0 AND error LIKE '%refused address%'`, id) >= 1
	})
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	if rcv.calls != 0 {
		t.Errorf("the receiver was reached %d times", rcv.calls)
	}
}

// Filters: an endpoint gets only its types and its user; an event
// published twice (a redelivery) is one message.
func TestFiltersAndRedelivery(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	all := newReceiver(t, nil)
	mine := newReceiver(t, nil)
	b.endpoint(t, all.URL, 0)
	b.endpoint(t, mine.URL, 5, string(webhook.TypeFailed))
	ev := event(5000, 5, 1, payment.StatusFailed)
	b.publish(t, ev, ev, event(5001, 5, 2, payment.StatusSucceeded), event(5002, 6, 1, payment.StatusFailed),
		event(5003, 5, 3, payment.StatusProcessing))
	testkit.Eventually(t, "the unfiltered endpoint got 3", func() bool { return len(all.accepted()) == 3 })
	testkit.Eventually(t, "the filtered endpoint got 1", func() bool { return len(mine.accepted()) == 1 })
	if got := mine.accepted()[0].ID; got != "5000:failed" {
		t.Errorf("filtered endpoint got %s", got)
	}
	if n := b.count(t, `SELECT count(*) FROM webhook_messages`); n != 4 {
		t.Errorf("%d messages, want 4", n)
	}
}
