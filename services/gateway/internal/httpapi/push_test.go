package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/finsvc/finance/pkg/auth"
	"github.com/finsvc/finance/pkg/kafka"
	"github.com/finsvc/finance/pkg/kafkatest"
	"github.com/finsvc/finance/pkg/ledger"
	"github.com/finsvc/finance/pkg/obs"
	"github.com/finsvc/finance/pkg/payment"
	"github.com/finsvc/finance/pkg/pgtest"
	"github.com/finsvc/finance/pkg/postgres"
	"github.com/finsvc/finance/pkg/testkit"
	"github.com/finsvc/finance/pkg/wire"
	"github.com/finsvc/finance/services/gateway/internal/httpapi"
	"github.com/finsvc/finance/services/gateway/internal/push"
	"github.com/finsvc/finance/services/gateway/internal/store"
)

// pushEnv is a gateway with a push hub fed by a real Kafka-protocol broker
// through the hub's own consumer, served over TCP so streams stream.
type pushEnv struct {
	*env
	cluster *kafkatest.Cluster
	prod    *kgo.Client
	dbURL   string
	gw      *gateway
}

// gateway is one gateway instance: its hub, registry and server.
type gateway struct {
	hub *push.Hub
	reg *prometheus.Registry
	srv *httptest.Server
}

type pushOpts struct {
	noKafka   bool
	waitMax   time.Duration
	buffer    int
	maxOpen   int
	heartbeat time.Duration
	// skipRecent starts the hub's consumer past the events already on the
	// topic (a hub started StartLookback after them).
	skipRecent bool
}

func setupPush(t testing.TB, o pushOpts) *pushEnv {
	t.Helper()
	dbURL := pgtest.NewDB(t)
	pool, err := postgres.Connect(context.Background(), dbURL, 6)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(pool.Close)
	e := &pushEnv{env: &env{t: t, pool: pool}, dbURL: dbURL}
	if !o.noKafka {
		e.cluster = kafkatest.New(t, 3, []string{kafka.TopicEvents})
		e.prod, err = kafka.NewClient(e.cluster.Brokers(), quietLogger(t))
		if err != nil {
			t.Fatalf("producer: %v", err)
		}
		t.Cleanup(e.prod.Close)
	}
	e.gw = e.startGateway(t, o)
	e.h = e.gw.srv.Config.Handler
	e.exec(`INSERT INTO merchants (id, name) VALUES (1, 'Pleo'), (4593, 'Amazon')`)
	return e
}

func quietLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// startGateway starts another gateway instance on the same database and
// broker, with a hub of its own (empty memory, as after a restart).
func (e *pushEnv) startGateway(t testing.TB, o pushOpts) *gateway {
	t.Helper()
	logger := quietLogger(t)
	st := store.New(e.pool)
	g := &gateway{reg: obs.NewRegistry()}
	if !o.noKafka {
		g.hub = push.New(push.Config{Logger: logger, Registry: g.reg, Buffer: o.buffer, MaxSubscribers: o.maxOpen})
		now := time.Now()
		if o.skipRecent {
			now = now.Add(push.StartLookback + time.Second)
		}
		cl, err := push.NewClient(e.cluster.Brokers(), logger, now)
		if err != nil {
			t.Fatalf("hub client: %v", err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = g.hub.Consume(ctx, cl) }()
		t.Cleanup(func() { cancel(); <-done; cl.Close() })
	}
	h := checked(t, httpapi.New(httpapi.Config{
		Logger: logger, Store: st, Verifier: auth.NewVerifier(testSecret), Registry: g.reg,
		Hub: g.hub, WaitMax: o.waitMax, Heartbeat: o.heartbeat,
	}))
	g.srv = httptest.NewServer(h)
	t.Cleanup(g.srv.Close)
	return g
}

// relay publishes the accepted events the gateway wrote to the outbox, as
// the outbox relay does, and deletes them.
func (e *pushEnv) relay() {
	e.t.Helper()
	rows, _ := e.pool.Query(context.Background(),
		`DELETE FROM outbox WHERE topic = $1 RETURNING key, payload`, kafka.TopicEvents)
	recs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*kgo.Record, error) {
		rec := &kgo.Record{Topic: kafka.TopicEvents}
		return rec, r.Scan(&rec.Key, &rec.Value)
	})
	if err != nil {
		e.t.Fatalf("read outbox: %v", err)
	}
	e.produce(recs...)
}

func (e *pushEnv) produce(recs ...*kgo.Record) {
	e.t.Helper()
	if len(recs) == 0 {
		return
	}
	if err := e.prod.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		e.t.Fatalf("produce: %v", err)
	}
}

// advance applies a change as the status consumer does and returns the
// record it would produce (not produced yet).
func (e *pushEnv) advance(paymentID int64, to payment.Status, reason string) *kgo.Record {
	e.t.Helper()
	var res ledger.Result
	err := postgres.InTx(context.Background(), e.pool, func(tx pgx.Tx) error {
		var err error
		res, err = ledger.Apply(context.Background(), tx, ledger.Transition{
			PaymentID: paymentID, To: to, Actor: "status-consumer", Reason: reason})
		return err
	})
	if err != nil || res.Event == nil {
		e.t.Fatalf("apply %s to payment %d: %v (%+v)", to, paymentID, err, res)
	}
	v, err := wire.EncodeEvent(*res.Event)
	if err != nil {
		e.t.Fatal(err)
	}
	return &kgo.Record{Topic: kafka.TopicEvents, Key: kafka.UserKey(res.Event.UserID), Value: v}
}

// payN accepts n payments of userID (a wallet with funds) and returns them.
func (e *pushEnv) payN(tok string, userID int64, n int, prefix string) []paymentResp {
	e.t.Helper()
	out := make([]paymentResp, n)
	for i := range out {
		w := e.pay(tok, prefix+strconv.Itoa(i), userID, 4593, -100)
		if w.Code != http.StatusAccepted {
			e.t.Fatalf("pay: %d %s", w.Code, w.Body.String())
		}
		out[i] = decodeBody[paymentResp](e.t, w)
	}
	return out
}

// get does a GET over TCP against gateway g.
func get(t testing.TB, g *gateway, path, tok string, header map[string]string) *http.Response {
	t.Helper()
	r, _ := http.NewRequest(http.MethodGet, g.srv.URL+path, nil)
	r.Header.Set("Authorization", "Bearer "+tok)
	for k, v := range header {
		r.Header.Set(k, v)
	}
	resp, err := g.srv.Client().Do(r)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return resp
}

func readPayment(t testing.TB, resp *http.Response) paymentResp {
	t.Helper()
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	var p paymentResp
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return p
}

// sseEvent is one server-sent event as a client parses it.
type sseEvent struct {
	ID, Type string
	Data     struct {
		paymentResp
		UserSeq int64 `json:"user_seq"`
	}
	Retry string
}

// stream is an open event stream.
type stream struct {
	t      testing.TB
	resp   *http.Response
	events chan sseEvent
}

func openStream(t testing.TB, g *gateway, userID int64, tok string, header map[string]string) *stream {
	t.Helper()
	return openStreamHeader(t, g, "/v1/users/"+strconv.FormatInt(userID, 10)+"/events", tok, header)
}

func openStreamPath(t testing.TB, g *gateway, path, tok string) *stream {
	t.Helper()
	return openStreamHeader(t, g, path, tok, nil)
}

func openStreamHeader(t testing.TB, g *gateway, path, tok string, header map[string]string) *stream {
	t.Helper()
	resp := get(t, g, path, tok, header)
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("stream: %d %s", resp.StatusCode, b)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("Content-Type = %q", ct)
	}
	s := &stream{t: t, resp: resp, events: make(chan sseEvent, 1000)}
	t.Cleanup(func() { resp.Body.Close() })
	go s.read()
	return s
}

// read parses the stream into s.events until it ends.
func (s *stream) read() {
	defer close(s.events)
	sc := bufio.NewScanner(s.resp.Body)
	var ev sseEvent
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if ev.ID != "" || ev.Retry != "" {
				s.events <- ev
			}
			ev = sseEvent{}
		case strings.HasPrefix(line, "id: "):
			ev.ID = strings.TrimPrefix(line, "id: ")
		case strings.HasPrefix(line, "event: "):
			ev.Type = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "retry: "):
			ev.Retry = strings.TrimPrefix(line, "retry: ")
		case strings.HasPrefix(line, "data: "):
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &ev.Data); err != nil {
				s.t.Errorf("data %q: %v", line, err)
			}
		}
	}
}

// next returns the next event; ok is false when the stream ended.
func (s *stream) next() (sseEvent, bool) {
	s.t.Helper()
	select {
	case ev, ok := <-s.events:
		return ev, ok
	case <-time.After(30 * time.Second): // a bound on a hang, not a speed assertion
		s.t.Fatal("no event")
		return sseEvent{}, false
	}
}

// ids reads n events and returns their ids.
func (s *stream) ids(n int) []string {
	s.t.Helper()
	var out []string
	for range n {
		ev, ok := s.next()
		if !ok {
			s.t.Fatalf("stream ended after %v", out)
		}
		out = append(out, ev.ID)
	}
	return out
}

func seqRange(from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, strconv.Itoa(i))
	}
	return out
}

func counter(t testing.TB, reg *prometheus.Registry, name, label string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label == "" || (len(m.GetLabel()) > 0 && m.GetLabel()[0].GetValue() == label) {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func TestLongPollWakesOnStatusChange(t *testing.T) {
	t.Parallel()
	e := setupPush(t, pushOpts{})
	e.wallet(3456, 10_000)
	tok := token(t, 3456, false)
	p := e.payN(tok, 3456, 1, "lp-")[0]

	for _, id := range []string{p.UID, strconv.FormatInt(p.ID, 10)} {
		got := make(chan *http.Response, 1)
		go func() { got <- get(t, e.gw, "/v1/payments/"+id+"?wait=30s", tok, nil) }()
		testkit.Eventually(t, "the long-poll waits", func() bool { return e.gw.hub.Open() == 1 })
		select {
		case r := <-got:
			t.Fatalf("answered before any change: %d", r.StatusCode)
		default:
		}
		to := payment.StatusProcessing
		if id == p.UID {
			e.relay() // the accepted event: same status as on arrival, no answer
		} else {
			to = payment.StatusSucceeded
		}
		e.produce(e.advance(p.ID, to, ""))
		resp := <-got
		if r := resp.Header.Get("Wait-Result"); r != "changed" {
			t.Errorf("Wait-Result = %q, want changed", r)
		}
		if got := readPayment(t, resp); got.Status != string(to) || got.UID != p.UID {
			t.Errorf("answer %+v, want payment %s %s", got, p.UID, to)
		}
	}
	testkit.Eventually(t, "the waiters are gone", func() bool { return e.gw.hub.Open() == 0 })
}

func TestLongPollTimeoutClampAndBadWait(t *testing.T) {
	t.Parallel()
	e := setupPush(t, pushOpts{waitMax: 50 * time.Millisecond})
	e.wallet(3456, 10_000)
	tok := token(t, 3456, false)
	p := e.payN(tok, 3456, 1, "lp-")[0]

	resp := get(t, e.gw, "/v1/payments/"+p.UID+"?wait=20ms", tok, nil)
	if r, c := resp.Header.Get("Wait-Result"), resp.Header.Get("Wait-Clamped"); r != "timeout" || c != "" {
		t.Errorf("Wait-Result %q, Wait-Clamped %q; want timeout and none", r, c)
	}
	if got := readPayment(t, resp); got.Status != "accepted" {
		t.Errorf("status %s, want accepted", got.Status)
	}

	resp = get(t, e.gw, "/v1/payments/"+p.UID+"?wait=1h", tok, nil)
	if r, c := resp.Header.Get("Wait-Result"), resp.Header.Get("Wait-Clamped"); r != "timeout" || c != "50ms" {
		t.Errorf("Wait-Result %q, Wait-Clamped %q; want timeout and 50ms", r, c)
	}
	readPayment(t, resp)

	for _, bad := range []string{"abc", "-1s", "30", ""} {
		w := e.do(req{method: http.MethodGet, path: "/v1/payments/" + p.UID + "?wait=" + bad, token: tok})
		wantProblem(t, w, http.StatusBadRequest, "invalid-request")
	}
	// Another user's payment is not found, waiting or not.
	w := e.do(req{method: http.MethodGet, path: "/v1/payments/" + p.UID + "?wait=1s", token: token(t, 99, false)})
	wantProblem(t, w, http.StatusNotFound, "not-found")
}

func TestWithoutKafka(t *testing.T) {
	t.Parallel()
	e := setupPush(t, pushOpts{noKafka: true})
	e.wallet(3456, 10_000)
	tok := token(t, 3456, false)
	p := e.payN(tok, 3456, 1, "nk-")[0]
	resp := get(t, e.gw, "/v1/payments/"+p.UID+"?wait=30s", tok, nil)
	if r := resp.Header.Get("Wait-Result"); r != "unavailable" {
		t.Errorf("Wait-Result = %q, want unavailable", r)
	}
	readPayment(t, resp)
	w := e.do(req{method: http.MethodGet, path: "/v1/users/3456/events", token: tok})
	wantProblem(t, w, http.StatusServiceUnavailable, "push-disabled")
}

func TestStreamOrderIDsAndData(t *testing.T) {
	t.Parallel()
	e := setupPush(t, pushOpts{})
	e.wallet(3456, 10_000)
	tok := token(t, 3456, false)
	s := openStream(t, e.gw, 3456, tok, nil)
	ps := e.payN(tok, 3456, 2, "o-")
	e.relay()
	e.produce(e.advance(ps[0].ID, payment.StatusProcessing, ""))
	e.produce(e.advance(ps[0].ID, payment.StatusFailed, "declined"))

	type row struct {
		ID, Type, UID, Status, Reason, Key string
		Seq                                int64
	}
	var got []row
	for range 4 {
		ev, _ := s.next()
		got = append(got, row{ev.ID, ev.Type, ev.Data.UID, ev.Data.Status, ev.Data.FailureReason,
			ev.Data.IdempotencyKey, ev.Data.UserSeq})
		if ev.Data.CreatedAt == "" || ev.Data.UpdatedAt == "" || ev.Data.StatusURL != "/v1/payments/"+ev.Data.UID {
			t.Errorf("event %s data %+v lacks the payment's fields", ev.ID, ev.Data)
		}
	}
	want := []row{
		{"1", "payment.accepted", ps[0].UID, "accepted", "", "o-0", 1},
		{"2", "payment.accepted", ps[1].UID, "accepted", "", "o-1", 2},
		{"3", "payment.processing", ps[0].UID, "processing", "", "o-0", 3},
		{"4", "payment.failed", ps[0].UID, "failed", "declined", "o-0", 4},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

func TestStreamOutOfOrderEvents(t *testing.T) {
	t.Parallel()
	e := setupPush(t, pushOpts{})
	e.wallet(3456, 10_000)
	tok := token(t, 3456, false)
	ps := e.payN(tok, 3456, 1, "ooo-")
	s := openStream(t, e.gw, 3456, tok, map[string]string{"Last-Event-ID": "1"})
	processing := e.advance(ps[0].ID, payment.StatusProcessing, "")
	succeeded := e.advance(ps[0].ID, payment.StatusSucceeded, "")
	e.produce(succeeded) // seq 3 before seq 2, as from two producers
	e.produce(processing)
	e.relay() // and the accepted event (seq 1) last of all
	if diff := cmp.Diff(seqRange(2, 3), s.ids(2)); diff != "" {
		t.Errorf("ids (-want +got):\n%s", diff)
	}
	// Nothing more: the late ones were not sent twice.
	e.produce(e.advance(e.payN(tok, 3456, 1, "ooo2-")[0].ID, payment.StatusProcessing, ""))
	if diff := cmp.Diff([]string{"4", "5"}, s.ids(2)); diff != "" {
		t.Errorf("ids after (-want +got):\n%s", diff)
	}
	if got := counter(t, e.gw.reg, "gateway_push_gap_events_total", ""); got < 1 {
		t.Errorf("gap events = %v, want at least 1", got)
	}
}

func TestStreamResumeFromMemoryAndAfterRestart(t *testing.T) {
	t.Parallel()
	e := setupPush(t, pushOpts{})
	e.wallet(3456, 10_000)
	tok := token(t, 3456, false)
	s := openStream(t, e.gw, 3456, tok, nil)
	ps := e.payN(tok, 3456, 3, "r-")
	e.relay()
	s.ids(3)
	s.resp.Body.Close()

	// Two more while the client is away; it resumes from id 2 on the same
	// gateway, whose memory holds 3..5.
	e.produce(e.advance(ps[0].ID, payment.StatusProcessing, ""), e.advance(ps[0].ID, payment.StatusSucceeded, ""))
	testkit.Eventually(t, "the hub saw 5 events", func() bool {
		return counter(t, e.gw.reg, "gateway_push_events_consumed_total", "") >= 5
	})
	s = openStream(t, e.gw, 3456, tok, map[string]string{"Last-Event-ID": "2"})
	if diff := cmp.Diff(seqRange(3, 5), s.ids(3)); diff != "" {
		t.Errorf("resume from memory (-want +got):\n%s", diff)
	}
	if got := counter(t, e.gw.reg, "gateway_push_resumes_total", "memory"); got != 1 {
		t.Errorf("memory resumes = %v, want 1", got)
	}

	// A restarted gateway has no memory: it resumes from PostgreSQL, and
	// the query parameter works like the header.
	g2 := e.startGateway(t, pushOpts{skipRecent: true})
	s2 := openStream(t, g2, 3456, tok, nil)
	s3 := openStreamPath(t, g2, "/v1/users/3456/events?last_event_id=1", tok)
	if diff := cmp.Diff(seqRange(2, 5), s3.ids(4)); diff != "" {
		t.Errorf("resume from PostgreSQL (-want +got):\n%s", diff)
	}
	if got := counter(t, g2.reg, "gateway_push_resumes_total", "postgres"); got != 1 {
		t.Errorf("postgres resumes = %v, want 1", got)
	}
	// Then live, with no duplicate and no gap.
	e.produce(e.advance(ps[1].ID, payment.StatusProcessing, ""))
	if diff := cmp.Diff([]string{"6"}, s3.ids(1)); diff != "" {
		t.Errorf("live after resume (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"6"}, s2.ids(1)); diff != "" {
		t.Errorf("stream without Last-Event-ID starts at the present (-want +got):\n%s", diff)
	}
}

func TestSlowStreamDroppedThenResumes(t *testing.T) {
	t.Parallel()
	e := setupPush(t, pushOpts{buffer: 1})
	e.wallet(3456, 10_000)
	tok := token(t, 3456, false)
	e.payN(tok, 3456, 3, "slow-")
	s := openStream(t, e.gw, 3456, tok, map[string]string{"Last-Event-ID": "0"})
	if diff := cmp.Diff(seqRange(1, 3), s.ids(3)); diff != "" {
		t.Errorf("catch-up (-want +got):\n%s", diff)
	}
	// Flood the stream's one-event buffer faster than it drains it.
	old := ledger.Event{UserID: 3456, UserSeq: 1, PaymentID: 1}
	testkit.Eventually(t, "the stream is dropped", func() bool {
		for range 100 {
			e.gw.hub.Publish(old)
		}
		return counter(t, e.gw.reg, "gateway_push_slow_subscribers_dropped_total", "") >= 1
	})
	if ev, ok := s.next(); ok {
		t.Fatalf("dropped stream sent %+v, want its end", ev)
	}
	e.payN(tok, 3456, 2, "slow2-")
	s = openStream(t, e.gw, 3456, tok, map[string]string{"Last-Event-ID": "3"})
	if diff := cmp.Diff(seqRange(4, 5), s.ids(2)); diff != "" {
		t.Errorf("resume after the drop (-want +got):\n%s", diff)
	}
}

func TestStreamRefusals(t *testing.T) {
	t.Parallel()
	e := setupPush(t, pushOpts{maxOpen: 1})
	e.wallet(3456, 10_000)
	tok := token(t, 3456, false)
	e.payN(tok, 3456, 2, "a-")
	cases := []struct {
		name, path, tok, lastID string
		status                  int
		typ                     string
	}{
		{"another user", "/v1/users/3457/events", tok, "", 403, "forbidden"},
		{"unknown user, admin", "/v1/users/999/events", token(t, 1, true), "", 404, "not-found"},
		{"own user without wallet", "/v1/users/999/events", token(t, 999, false), "", 404, "not-found"},
		{"bad user id", "/v1/users/abc/events", tok, "", 400, "invalid-request"},
		{"bad Last-Event-ID", "/v1/users/3456/events", tok, "abc", 400, "invalid-request"},
		{"negative Last-Event-ID", "/v1/users/3456/events", tok, "-1", 400, "invalid-request"},
		{"Last-Event-ID beyond the latest", "/v1/users/3456/events", tok, "3", 400, "invalid-request"},
		{"bad last_event_id", "/v1/users/3456/events?last_event_id=x", tok, "", 400, "invalid-request"},
		{"no token", "/v1/users/3456/events", "", "", 401, "unauthorized"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := e.do(req{method: http.MethodGet, path: c.path, token: c.tok, header: map[string]string{"Last-Event-ID": c.lastID}})
			wantProblem(t, w, c.status, c.typ)
		})
	}
	if got := e.gw.hub.Open(); got != 0 {
		t.Errorf("%d subscriptions left open by refused requests", got)
	}
	// The cap: one open stream, the second request is refused.
	openStream(t, e.gw, 3456, tok, nil)
	w := e.do(req{method: http.MethodGet, path: "/v1/payments/100000?wait=1s", token: tok})
	wantProblem(t, w, http.StatusServiceUnavailable, "push-overloaded")
	if w.Header().Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
}

func TestShutdownEndsWaitsAndStreams(t *testing.T) {
	t.Parallel()
	e := setupPush(t, pushOpts{})
	e.wallet(3456, 10_000)
	tok := token(t, 3456, false)
	p := e.payN(tok, 3456, 1, "sd-")[0]
	s := openStream(t, e.gw, 3456, tok, nil)
	got := make(chan *http.Response, 1)
	go func() { got <- get(t, e.gw, "/v1/payments/"+p.UID+"?wait=60s", tok, nil) }()
	testkit.Eventually(t, "both wait", func() bool { return e.gw.hub.Open() == 2 })

	e.gw.hub.Drain()
	resp := <-got
	if r := resp.Header.Get("Wait-Result"); r != "shutdown" {
		t.Errorf("Wait-Result = %q, want shutdown", r)
	}
	if p := readPayment(t, resp); p.Status != "accepted" {
		t.Errorf("status %s, want the current accepted", p.Status)
	}
	ev, ok := s.next()
	if !ok || ev.Retry != "2000" {
		t.Errorf("got %+v (open %v), want a retry hint", ev, ok)
	}
	if _, ok := s.next(); ok {
		t.Error("the stream did not end after the retry hint")
	}
	testkit.Eventually(t, "nothing open", func() bool { return e.gw.hub.Open() == 0 })
}
