package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/time/rate"

	"github.com/finsvc/finance/pkg/envconfig"
	"github.com/finsvc/finance/pkg/kafka"
	"github.com/finsvc/finance/pkg/kafkatest"
	"github.com/finsvc/finance/pkg/payment"
	"github.com/finsvc/finance/pkg/pgtest"
	"github.com/finsvc/finance/pkg/postgres"
	"github.com/finsvc/finance/pkg/stacktest"
	"github.com/finsvc/finance/pkg/testkit"
	"github.com/finsvc/finance/pkg/wire"
)

// In these tests a payment's amount is minus its id, so that the as-is API,
// which carries no reference, still tells the fake which payment it executes.

// fakeProcessor speaks both processor APIs, executes each idempotency key
// once, and records the order in which each user's payments were called.
type fakeProcessor struct {
	slow func(paymentID int64) bool // answer late (never past the timeout)
	// started, when set, is sent each called payment id if it has room;
	// gate, when set, then holds every call until it is closed.
	started chan int64
	gate    chan struct{}
	// limiter, when set, answers 429 above its rate; outage answers 503.
	limiter *rate.Limiter
	outage  atomic.Bool
	// holdUser's first call waits for holdGate.
	holdUser int64
	holdGate chan struct{}
	// ambiguous, when set, answers 500 (maybe executed) for the payments it
	// selects; refuse answers 429 (not executed) without Retry-After.
	ambiguous, refuse func(paymentID int64) bool
	// onCall, when set, sees every call's payment id before it is answered.
	onCall func(paymentID int64)
	// proxy503, when set, selects payments whose first call is executed
	// and then answered 503 by "a proxy" in front of the processor, with
	// the proxy's own body.
	proxy503 func(paymentID int64) bool
	// holdFirst, when set, holds the first call of every payment until the
	// dispatcher cancels it (then nothing is executed, as when a client
	// leaves before the processor settles) or holdFirst is closed.
	holdFirst chan struct{}
	// lookupFails, when set, answers 503 to the lookup of the keys it selects.
	lookupFails func(key string) bool

	mu          sync.Mutex
	active      int // calls being answered
	maxActive   int
	rateLimited int
	outaged     int
	order       map[int64][]int64 // user → payment ids in call order
	calls       map[int64]int     // payment id → calls
	executed    map[int64]string  // payment id → processor ref
	// settled holds what GET /v2/payments/{key} answers: every keyed call
	// answered with a result, and what settleEarlier recorded.
	settled map[string]lookupAnswer
	lookups map[string]int // idempotency key → lookups
	// arrived counts every call of a payment as it arrives; activeByID
	// the calls of a payment being answered; overlaps the calls that began
	// while another call of the same payment was still being answered;
	// cancelled the held calls the dispatcher cancelled.
	arrived, activeByID, overlaps, cancelled map[int64]int
	// seen counts the calls that arrived; changed is closed, and replaced,
	// whenever a call arrives or ends, for handlers waiting on other calls.
	seen    int
	changed chan struct{}
}

// changedLocked wakes the handlers waiting on other calls; f.mu is held.
func (f *fakeProcessor) changedLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// waitLocked lets f.mu go until a call arrives or ends (true) or giveUp
// fires (false); f.mu is held again when it returns.
func (f *fakeProcessor) waitLocked(giveUp <-chan time.Time) bool {
	ch := f.changed
	f.mu.Unlock()
	defer f.mu.Lock()
	select {
	case <-ch:
		return true
	case <-giveUp:
		return false
	}
}

// lookupAnswer is the processor's record of one settled key.
type lookupAnswer struct {
	id, userID int64
	ref        string
	declined   bool
}

func newFakeProcessor(t *testing.T, slow func(int64) bool) (*fakeProcessor, string) {
	t.Helper()
	f := &fakeProcessor{slow: slow, order: map[int64][]int64{}, calls: map[int64]int{}, executed: map[int64]string{},
		settled: map[string]lookupAnswer{}, lookups: map[string]int{},
		arrived: map[int64]int{}, activeByID: map[int64]int{}, overlaps: map[int64]int{}, cancelled: map[int64]int{},
		changed: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v2/payments", f.serve)
	mux.HandleFunc("POST /payment", f.serve)
	mux.HandleFunc("POST /v2/payment-batches", f.serveBatch)
	mux.HandleFunc("GET /v2/payments/{key}", f.lookup)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return f, srv.URL
}

// settleEarlier records request r as settled by an earlier call under its
// key (an earlier owner's call that timed out): executed, or declined when
// the fake declines it.
func (f *fakeProcessor) settleEarlier(r wire.Requested) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := r.PaymentID
	a := lookupAnswer{id: id, userID: r.UserID, declined: declines(id)}
	if !a.declined {
		a.ref = fmt.Sprintf("ref-earlier-%d", id)
		f.executed[id] = a.ref
	}
	f.settled[payment.ProcessorKey(uidOf(id))] = a
}

// lookup is the proposed API's GET /v2/payments/{key}.
func (f *fakeProcessor) lookup(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	f.mu.Lock()
	f.lookups[key]++
	a, found := f.settled[key]
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	switch {
	case f.lookupFails != nil && f.lookupFails(key):
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, `{"error":"outage"}`)
	case !found:
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, `{"error":"not_found"}`)
	case a.declined:
		_ = json.NewEncoder(w).Encode(map[string]any{"id": "d-" + strconv.FormatInt(a.id, 10), "idempotency_key": key,
			"user_id": a.userID, "amount": -a.id, "status": "declined", "reason": "card declined"})
	default:
		_ = json.NewEncoder(w).Encode(map[string]any{"id": a.ref, "idempotency_key": key,
			"user_id": a.userID, "amount": -a.id, "status": "succeeded"})
	}
}

// serveBatch is the proposed API's POST /v2/payment-batches: each payment
// is answered at once, concurrently, by serve as the call of its own it
// stands for, and the batch replies when every one has its answer. What
// befalls the whole HTTP call (the dispatcher giving it up) befalls each.
func (f *fakeProcessor) serveBatch(w http.ResponseWriter, r *http.Request) {
	var batch struct {
		Payments []struct {
			IdempotencyKey string `json:"idempotency_key"`
			UserID         int64  `json:"user_id"`
			Amount         int64  `json:"amount"`
			Reference      string `json:"reference"`
		} `json:"payments"`
	}
	if err := json.NewDecoder(r.Body).Decode(&batch); err != nil || len(batch.Payments) == 0 {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, `{"error":"bad batch"}`)
		return
	}
	type result struct {
		Status     int             `json:"status"`
		Body       json.RawMessage `json:"body"`
		RetryAfter *int            `json:"retry_after,omitempty"`
	}
	results := make([]result, len(batch.Payments))
	var wg sync.WaitGroup
	for i, p := range batch.Payments {
		body, _ := json.Marshal(map[string]any{"user_id": p.UserID, "amount": p.Amount, "reference": p.Reference})
		one := httptest.NewRequestWithContext(r.Context(), http.MethodPost, "/v2/payments", bytes.NewReader(body))
		one.Header.Set("Idempotency-Key", p.IdempotencyKey)
		wg.Go(func() {
			rec := httptest.NewRecorder()
			f.serve(rec, one)
			results[i] = result{Status: rec.Code, Body: rec.Body.Bytes()}
			if !json.Valid(results[i].Body) {
				results[i].Body, _ = json.Marshal(rec.Body.String())
			}
			if ra, err := strconv.Atoi(rec.Header().Get("Retry-After")); err == nil {
				results[i].RetryAfter = &ra
			}
		})
	}
	wg.Wait()
	if r.Context().Err() != nil {
		return // the dispatcher gave the call up
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"results": results})
}

// declines reports whether the fake declines a payment.
func declines(paymentID int64) bool { return paymentID%7 == 0 }

func (f *fakeProcessor) serve(w http.ResponseWriter, r *http.Request) {
	var body struct {
		UserID int64 `json:"user_id"`
		Amount int64 `json:"amount"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.Amount == 0 {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, `{"error":"bad body"}`)
		return
	}
	id := -body.Amount
	if f.onCall != nil {
		f.onCall(id)
	}
	// A call that begins while another of the same payment is still being
	// answered overlaps it. The dispatcher closes a cancelled call's
	// connection before it returns; the fake notices a moment later, and
	// waits up to a second for the earlier call to end.
	f.mu.Lock()
	overlapWait := time.NewTimer(time.Second)
	for f.activeByID[id] > 0 && f.waitLocked(overlapWait.C) {
	}
	overlapWait.Stop()
	if f.activeByID[id] > 0 {
		f.overlaps[id]++
	}
	f.activeByID[id]++
	first := f.arrived[id] == 0
	f.arrived[id]++
	f.seen++
	seq := f.seen
	f.changedLocked()
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.activeByID[id]--
		f.changedLocked()
		f.mu.Unlock()
	}()
	if r.URL.Path == "/v2/payments" && r.Header.Get("Idempotency-Key") != payment.ProcessorKey(uidOf(id)) {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, `{"error":"wrong idempotency key"}`)
		return
	}
	if f.ambiguous != nil && f.ambiguous(id) {
		f.answerUnexecuted(w, body.UserID, id, http.StatusInternalServerError, `{"error":"internal"}`)
		return
	}
	if f.refuse != nil && f.refuse(id) {
		f.answerUnexecuted(w, body.UserID, id, http.StatusTooManyRequests, `{"error":"rate_limited"}`)
		return
	}
	if f.outage.Load() {
		f.mu.Lock()
		f.outaged++
		f.mu.Unlock()
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, `{"error":"outage"}`)
		return
	}
	if f.limiter != nil && !f.limiter.Allow() {
		f.mu.Lock()
		f.rateLimited++
		f.mu.Unlock()
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = io.WriteString(w, `{"error":"rate_limited"}`)
		return
	}
	f.mu.Lock()
	f.active++
	f.maxActive = max(f.maxActive, f.active)
	hold := f.holdGate != nil && body.UserID == f.holdUser && len(f.order[body.UserID]) == 0
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.active--
		f.mu.Unlock()
	}()
	if hold {
		<-f.holdGate
	}
	if f.holdFirst != nil && first {
		select {
		case <-f.holdFirst:
		case <-r.Context().Done():
			// The dispatcher gave the call up before it was settled.
			f.mu.Lock()
			f.order[body.UserID] = append(f.order[body.UserID], id)
			f.calls[id]++
			f.cancelled[id]++
			f.mu.Unlock()
			return
		}
	}
	f.mu.Lock()
	f.order[body.UserID] = append(f.order[body.UserID], id)
	f.calls[id]++
	ref, done := f.executed[id]
	if !done && !declines(id) {
		ref = fmt.Sprintf("ref-%d", id)
		f.executed[id] = ref
	}
	f.mu.Unlock()

	if f.slow != nil && f.slow(id) {
		// A slow answer waits for a later call to arrive: the dispatcher
		// was free to send meanwhile, so a user's next payment sent before
		// this answer would show as overtaking, and calls overlap. At most
		// 20 ms, for the last calls and a full in-flight bound.
		f.mu.Lock()
		slowFor := time.NewTimer(20 * time.Millisecond)
		for f.seen == seq && f.waitLocked(slowFor.C) {
		}
		slowFor.Stop()
		f.mu.Unlock()
	}
	if f.started != nil {
		select {
		case f.started <- id:
		default:
		}
	}
	if f.gate != nil {
		<-f.gate
	}
	key := r.Header.Get("Idempotency-Key")
	if key != "" {
		f.mu.Lock()
		f.settled[key] = lookupAnswer{id: id, userID: body.UserID, ref: ref, declined: declines(id)}
		f.mu.Unlock()
	}
	if f.proxy503 != nil && f.proxy503(id) && first {
		// Executed behind a proxy that then answers 503 of its own.
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, "<html><body><h1>503 Service Unavailable</h1>upstream connect error</body></html>")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if declines(id) {
		_ = json.NewEncoder(w).Encode(map[string]any{"id": "d-" + strconv.FormatInt(id, 10), "idempotency_key": key, "status": "declined", "reason": "card declined"})
		return
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"id": ref, "idempotency_key": key, "status": "succeeded"})
}

// answerUnexecuted records a call of payment id of userID, executes
// nothing, and answers code with body.
func (f *fakeProcessor) answerUnexecuted(w http.ResponseWriter, userID, id int64, code int, body string) {
	f.mu.Lock()
	f.order[userID] = append(f.order[userID], id)
	f.calls[id]++
	f.mu.Unlock()
	w.WriteHeader(code)
	_, _ = io.WriteString(w, body)
}

func (f *fakeProcessor) snapshot() (order map[int64][]int64, calls map[int64]int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	order = map[int64][]int64{}
	for u, ids := range f.order {
		order[u] = slices.Clone(ids)
	}
	calls = map[int64]int{}
	for id, n := range f.calls {
		calls[id] = n
	}
	return order, calls
}

// testTopics are the topics every test cluster has: the dispatcher's input,
// its output and its dead-letter topic.
var testTopics = []string{kafka.TopicRequested, kafka.TopicOutcomes, kafka.DLQTopic(kafka.TopicRequested)}

// dispatcherEnv is the environment of a dispatcher under test.
// It has a migrated database of its own (the dispatch guard reads each
// payment there before its call); produceRequests writes the payments.
func dispatcherEnv(t *testing.T, brokers []string, processorURL, api, opsAddr string) map[string]string {
	t.Helper()
	return map[string]string{
		"DATABASE_URL":                pgtest.NewDB(t),
		"KAFKA_BROKERS":               strings.Join(brokers, ","),
		"LOG_LEVEL":                   "info",
		"OPS_ADDR":                    opsAddr,
		"PROCESSOR_URL":               processorURL,
		"PROCESSOR_API":               api,
		"PROCESSOR_RATE_LIMIT":        "2000",
		"PROCESSOR_TIMEOUT":           "5s",
		"DISPATCHER_MAX_IN_FLIGHT":    "16",
		"DISPATCHER_TRANSACTIONAL_ID": "dispatcher-test",
		"SHUTDOWN_TIMEOUT":            "20s",
	}
}

// startDispatcher runs the dispatcher like main does and returns a function
// that sends it the shutdown signal and waits for it to stop.
func startDispatcher(t *testing.T, env map[string]string) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- run(ctx, nil, func(k string) string { return env[k] }, t.Output(), t.Output()) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-errc:
				if err != nil {
					t.Errorf("run returned %v after shutdown, want nil", err)
				}
			case <-time.After(60 * time.Second):
				t.Errorf("dispatcher did not stop")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func newProducer(t *testing.T, brokers []string) *kgo.Client {
	t.Helper()
	cl, err := kafka.NewClient(brokers, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// produceRequests writes the payments of reqs to env's database, as the
// gateway would have accepted them, then publishes reqs.
func produceRequests(t *testing.T, env map[string]string, cl *kgo.Client, reqs ...wire.Requested) {
	t.Helper()
	seedPayments(t, openPool(t, env["DATABASE_URL"]), reqs...)
	produceRecords(t, cl, reqs...)
}

// produceRecords publishes reqs, whether or not the database holds them.
func produceRecords(t *testing.T, cl *kgo.Client, reqs ...wire.Requested) {
	t.Helper()
	var recs []*kgo.Record
	for _, r := range reqs {
		recs = append(recs, &kgo.Record{Topic: kafka.TopicRequested, Key: kafka.UserKey(r.UserID), Value: mustEncode(t, r)})
	}
	if err := cl.ProduceSync(t.Context(), recs...).FirstErr(); err != nil {
		t.Fatalf("produce requests: %v", err)
	}
}

func request(userID, paymentID int64) wire.Requested {
	return wire.Requested{PaymentID: paymentID, PaymentUID: uidOf(paymentID).String(), UserID: userID,
		MerchantID: 1, Amount: -paymentID, IdempotencyKey: fmt.Sprintf("client-%d", paymentID)}
}

// uidOf is the uid of test payment id: derived from the id, so that the fake
// processor can check the key it is sent.
func uidOf(paymentID int64) uuid.UUID {
	return uuid.NewSHA1(uuid.NameSpaceOID, []byte(strconv.FormatInt(paymentID, 10)))
}

// requestsFor returns n (< 100) payments for each user with ids
// user*1000 + round*100 + i + 1, interleaved across users the way concurrent
// clients would send them.
func requestsFor(users []int64, round, n int) []wire.Requested {
	var out []wire.Requested
	for i := range n {
		for _, u := range users {
			out = append(out, request(u, u*1000+int64(round*100+i)+1))
		}
	}
	return out
}

// outcomeReader reads payments.outcomes with read_committed isolation.
type outcomeReader struct {
	cl  *kgo.Client
	got []wire.Outcome // in partition order
}

func newOutcomeReader(t *testing.T, brokers []string) *outcomeReader {
	t.Helper()
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(brokers...),
		kgo.ConsumeTopics(kafka.TopicOutcomes),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return &outcomeReader{cl: cl}
}

// waitUntil reads until done holds for everything read so far.
func (o *outcomeReader) waitUntil(t *testing.T, what string, done func([]wire.Outcome) bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 45*time.Second)
	defer cancel()
	for !done(o.got) {
		fs := o.cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("gave up waiting for %s; read %d outcomes", what, len(o.got))
		}
		fs.EachError(func(topic string, p int32, err error) { t.Logf("fetch %s/%d: %v", topic, p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			out, err := wire.DecodeOutcome(r.Value)
			if err != nil {
				t.Fatalf("undecodable outcome at %d/%d: %v", r.Partition, r.Offset, err)
			}
			if string(r.Key) != strconv.FormatInt(out.UserID, 10) {
				t.Errorf("outcome of payment %d keyed %q, want its user %d", out.PaymentID, r.Key, out.UserID)
			}
			o.got = append(o.got, out)
		})
	}
}

// readFor reads whatever becomes readable during d.
func (o *outcomeReader) readFor(t *testing.T, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	for ctx.Err() == nil {
		o.cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			out, err := wire.DecodeOutcome(r.Value)
			if err != nil {
				t.Fatalf("undecodable outcome at %d/%d: %v", r.Partition, r.Offset, err)
			}
			o.got = append(o.got, out)
		})
	}
}

func isFinal(o wire.Outcome) bool {
	return o.Status != payment.StatusProcessing
}

// finals returns the final outcomes by payment id, failing on duplicates.
func finals(t *testing.T, got []wire.Outcome) map[int64]wire.Outcome {
	t.Helper()
	m := map[int64]wire.Outcome{}
	for _, o := range got {
		if !isFinal(o) {
			continue
		}
		if prev, dup := m[o.PaymentID]; dup {
			t.Errorf("payment %d has two final outcomes: %v and %v", o.PaymentID, prev.Status, o.Status)
		}
		m[o.PaymentID] = o
	}
	return m
}

func countFinals(got []wire.Outcome) int {
	n := 0
	for _, o := range got {
		if isFinal(o) {
			n++
		}
	}
	return n
}

// wantOutcome is the final outcome the fake processor leads to.
func wantOutcome(paymentID int64) (payment.Status, string) {
	if declines(paymentID) {
		return payment.StatusFailed, ""
	}
	return payment.StatusSucceeded, fmt.Sprintf("ref-%d", paymentID)
}

func TestDispatchOneOutcomePerPaymentInUserOrder(t *testing.T) {
	t.Parallel()
	for _, api := range []string{"proposed", "as-is"} {
		t.Run(api, func(t *testing.T) {
			t.Parallel()
			cluster := kafkatest.New(t, 4, testTopics)
			// Every other payment of odd users answers late, so a dispatcher
			// that let a user's later payment overtake would show it.
			fake, url := newFakeProcessor(t, func(id int64) bool { return (id/1000)%2 == 1 && id%2 == 1 })
			opsAddr := stacktest.FreeAddr(t)
			env := dispatcherEnv(t, cluster.Brokers(), url, api, opsAddr)
			users := []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
			reqs := requestsFor(users, 0, 6)
			if api == "as-is" {
				// The proposed API needs no database at all.
			}
			startDispatcher(t, env)

			prod := newProducer(t, cluster.Brokers())
			produceRequests(t, env, prod, reqs[:len(reqs)/2]...)
			// An undecodable record and one without ids must not block their partitions.
			if err := prod.ProduceSync(t.Context(),
				&kgo.Record{Topic: kafka.TopicRequested, Key: kafka.UserKey(3), Value: []byte("\xff not protobuf")},
				&kgo.Record{Topic: kafka.TopicRequested, Key: kafka.UserKey(4), Value: mustEncode(t, wire.Requested{Amount: -5})},
			).FirstErr(); err != nil {
				t.Fatal(err)
			}
			produceRequests(t, env, prod, reqs[len(reqs)/2:]...)
			// A zero amount is failed without calling the processor.
			invalid := wire.Requested{PaymentID: 99999, PaymentUID: uidOf(99999).String(), UserID: 5, Amount: 0}
			produceRequests(t, env, prod, invalid)

			reader := newOutcomeReader(t, cluster.Brokers())
			wantFinals := len(reqs) + 1
			reader.waitUntil(t, "every final and processing outcome", func(got []wire.Outcome) bool {
				processing := 0
				for _, o := range got {
					if !isFinal(o) {
						processing++
					}
				}
				return countFinals(got) >= wantFinals && processing >= len(reqs)
			})

			got := finals(t, reader.got)
			for _, r := range reqs {
				o, ok := got[r.PaymentID]
				if !ok {
					t.Errorf("payment %d has no final outcome", r.PaymentID)
					continue
				}
				status, ref := wantOutcome(r.PaymentID)
				if o.Status != status || o.ProcessorRef != ref || o.UserID != r.UserID || o.Attempts != 1 {
					t.Errorf("payment %d outcome = %v, want status %v ref %q user %d attempts 1", r.PaymentID, o, status, ref, r.UserID)
				}
				if status == payment.StatusFailed && o.Reason != "card declined" {
					t.Errorf("payment %d reason = %q, want the processor's", r.PaymentID, o.Reason)
				}
			}
			if o := got[invalid.PaymentID]; o.Status != payment.StatusFailed || !strings.Contains(o.Reason, "invalid request") {
				t.Errorf("zero-amount payment outcome = %v, want failed as an invalid request", o)
			}
			if len(got) != wantFinals {
				t.Errorf("%d final outcomes, want %d", len(got), wantFinals)
			}

			// Per-user order: at the processor and in payments.outcomes.
			wantOrder := map[int64][]int64{}
			for _, r := range reqs {
				wantOrder[r.UserID] = append(wantOrder[r.UserID], r.PaymentID)
			}
			order, calls := fake.snapshot()
			if diff := cmp.Diff(wantOrder, order); diff != "" {
				t.Errorf("processor call order per user (-want +got):\n%s", diff)
			}
			gotOutcomeOrder := map[int64][]int64{}
			for _, o := range reader.got {
				if isFinal(o) && o.PaymentID != invalid.PaymentID {
					gotOutcomeOrder[o.UserID] = append(gotOutcomeOrder[o.UserID], o.PaymentID)
				}
			}
			if diff := cmp.Diff(wantOrder, gotOutcomeOrder); diff != "" {
				t.Errorf("outcome order per user (-want +got):\n%s", diff)
			}
			for id, n := range calls {
				if n != 1 {
					t.Errorf("payment %d called %d times, want 1", id, n)
				}
			}

			// Dead letters are counted once their transaction committed,
			// which may be a transaction after the last outcome read.
			waitMetrics(t, opsAddr,
				`dispatcher_dead_letters_total{reason="undecodable"} 1`,
				`dispatcher_dead_letters_total{reason="missing_ids"} 1`,
				`dispatcher_processor_rate_limit_per_second 2000`,
				fmt.Sprintf(`dispatcher_processor_calls_total{result="succeeded"} %d`, countWhere(reqs, func(id int64) bool { return !declines(id) })),
				fmt.Sprintf(`dispatcher_processor_calls_total{result="declined"} %d`, countWhere(reqs, declines)),
			)
		})
	}
}

func TestRestartDoesNotReemitCommittedWork(t *testing.T) {
	t.Parallel()
	cluster := kafkatest.New(t, 4, testTopics)
	fake, url := newFakeProcessor(t, func(id int64) bool { return id%3 == 0 })
	env := dispatcherEnv(t, cluster.Brokers(), url, "as-is", stacktest.FreeAddr(t))
	prod := newProducer(t, cluster.Brokers())
	reader := newOutcomeReader(t, cluster.Brokers())
	users := []int64{11, 12, 13, 14, 15, 16}

	first := requestsFor(users, 0, 4)
	produceRequests(t, env, prod, first...)
	stop := startDispatcher(t, env)
	reader.waitUntil(t, "the first round's outcomes", func(got []wire.Outcome) bool {
		return countFinals(got) >= len(first)
	})
	stop()

	// The same group and transactional id start again. New work for every
	// user lands behind the committed work in each partition, so once the
	// new outcomes are read, any re-emitted old outcome would have been too.
	second := requestsFor(users, 1, 4)
	produceRequests(t, env, prod, second...)
	startDispatcher(t, env)
	reader.waitUntil(t, "the second round's outcomes", func(got []wire.Outcome) bool {
		return countFinals(got) >= len(first)+len(second)
	})

	got := finals(t, reader.got)
	if len(got) != len(first)+len(second) {
		t.Errorf("%d distinct final outcomes, want %d", len(got), len(first)+len(second))
	}
	_, calls := fake.snapshot()
	for _, r := range append(first, second...) {
		if _, ok := got[r.PaymentID]; !ok {
			t.Errorf("payment %d has no final outcome", r.PaymentID)
		}
		if n := calls[r.PaymentID]; n != 1 {
			t.Errorf("payment %d called %d times, want exactly 1 (as-is API: a second call executes twice)", r.PaymentID, n)
		}
	}
}

func TestShutdownFinishesInFlightCalls(t *testing.T) {
	t.Parallel()
	cluster := kafkatest.New(t, 4, testTopics)
	fake, url := newFakeProcessor(t, nil)
	fake.gate = make(chan struct{})
	fake.started = make(chan int64, 100)
	opsAddr := stacktest.FreeAddr(t)
	env := dispatcherEnv(t, cluster.Brokers(), url, "as-is", opsAddr)
	reqs := requestsFor([]int64{21, 22, 23}, 0, 1)
	stop := startDispatcher(t, env)

	produceRequests(t, env, newProducer(t, cluster.Brokers()), reqs...)
	select {
	case <-fake.started:
	case <-time.After(45 * time.Second):
		t.Fatal("no processor call started")
	}

	// SIGTERM while calls are held at the processor: the dispatcher must
	// wait for their answers and commit them rather than drop them.
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	// The ops server closes on the same signal as the dispatch loop; once
	// it is gone, the dispatcher is shutting down with the calls still held.
	testkit.Eventually(t, "the ops server to close after shutdown began", func() bool {
		resp, err := http.Get("http://" + opsAddr + "/healthz")
		if err != nil {
			return true
		}
		resp.Body.Close()
		return false
	})
	close(fake.gate)
	<-stopped

	// Everything the processor saw has its outcome committed.
	_, calls := fake.snapshot()
	reader := newOutcomeReader(t, cluster.Brokers())
	reader.waitUntil(t, "the outcomes of the calls made before shutdown", func(got []wire.Outcome) bool {
		return countFinals(got) >= len(calls)
	})
	got := finals(t, reader.got)
	for id, n := range calls {
		if n != 1 {
			t.Errorf("payment %d called %d times, want 1", id, n)
		}
		if _, ok := got[id]; !ok {
			t.Errorf("payment %d was called before shutdown but has no committed outcome", id)
		}
	}
}

func TestShutdownGraceEndsCallsAsUnknown(t *testing.T) {
	t.Parallel()
	cluster := kafkatest.New(t, 4, testTopics)
	fake, url := newFakeProcessor(t, nil)
	fake.gate = make(chan struct{})
	fake.started = make(chan int64, 100)
	release := sync.OnceFunc(func() { close(fake.gate) })
	t.Cleanup(release) // runs before the fake server closes
	env := dispatcherEnv(t, cluster.Brokers(), url, "as-is", stacktest.FreeAddr(t))
	env["SHUTDOWN_TIMEOUT"] = "100ms"
	users := []int64{41, 42, 43}
	reqs := requestsFor(users, 0, 1)
	more := requestsFor(users, 1, 1)
	stop := startDispatcher(t, env)

	produceRequests(t, env, newProducer(t, cluster.Brokers()), reqs...)
	for range reqs {
		select {
		case <-fake.started:
		case <-time.After(45 * time.Second):
			t.Fatal("processor calls did not start")
		}
	}
	// The processor never answers; the grace period ends the calls. They
	// may have executed, so each becomes UNKNOWN, committed, never re-sent.
	stop()
	release()

	reader := newOutcomeReader(t, cluster.Brokers())
	reader.waitUntil(t, "unknown outcomes", func(got []wire.Outcome) bool {
		return countFinals(got) >= len(reqs)
	})
	got := finals(t, reader.got)
	for _, r := range reqs {
		o := got[r.PaymentID]
		if o.Status != payment.StatusUnknown || o.Attempts != 1 {
			t.Errorf("payment %d outcome = %v, want unknown after 1 attempt", r.PaymentID, o)
		}
	}

	// A restart finds nothing left to dispatch: the work was committed.
	produceRequests(t, env, newProducer(t, cluster.Brokers()), more...)
	startDispatcher(t, env)
	reader.waitUntil(t, "the next round", func(got []wire.Outcome) bool {
		return countFinals(got) >= len(reqs)+len(more)
	})
	_, calls := fake.snapshot()
	for _, r := range reqs {
		if n := calls[r.PaymentID]; n != 1 {
			t.Errorf("payment %d called %d times, want exactly 1", r.PaymentID, n)
		}
	}
	if n := countFinals(reader.got); n != len(reqs)+len(more) {
		t.Errorf("%d final outcomes, want %d", n, len(reqs)+len(more))
	}
}

func TestRebalanceKeepsOneOutcomePerPayment(t *testing.T) {
	t.Parallel()
	cluster := kafkatest.New(t, 4, testTopics)
	// Slow calls keep transactions open while a second replica joins, so
	// some are aborted by the rebalance and their records dispatched again.
	fake, url := newFakeProcessor(t, func(int64) bool { return true })
	envA := dispatcherEnv(t, cluster.Brokers(), url, "proposed", stacktest.FreeAddr(t))
	envB := dispatcherEnv(t, cluster.Brokers(), url, "proposed", stacktest.FreeAddr(t))
	envB["DATABASE_URL"] = envA["DATABASE_URL"] // one database behind both replicas
	envA["DISPATCHER_MAX_IN_FLIGHT"], envB["DISPATCHER_MAX_IN_FLIGHT"] = "2", "2"
	envB["DISPATCHER_TRANSACTIONAL_ID"] = "dispatcher-test-b"
	prod := newProducer(t, cluster.Brokers())
	reader := newOutcomeReader(t, cluster.Brokers())

	fake.started = make(chan int64, 1)

	reqs := requestsFor([]int64{31, 32, 33, 34, 35, 36, 37, 38}, 0, 8)
	produceRequests(t, envA, prod, reqs...)
	startDispatcher(t, envA)
	select {
	case <-fake.started: // A is in the middle of its first transaction
	case <-time.After(45 * time.Second):
		t.Fatal("no processor call started")
	}
	startDispatcher(t, envB)
	reader.waitUntil(t, "every outcome", func(got []wire.Outcome) bool {
		return len(finals(t, got)) >= len(reqs)
	})

	// Read on until the new payments of a later round are in: any duplicate
	// from an aborted transaction would have to show up before them.
	more := requestsFor([]int64{31, 32, 33, 34, 35, 36, 37, 38}, 1, 1)
	produceRequests(t, envA, prod, more...)
	reader.waitUntil(t, "the later round", func(got []wire.Outcome) bool {
		return len(finals(t, got)) >= len(reqs)+len(more)
	})

	// finals fails on a second final outcome for any payment.
	got := finals(t, reader.got)
	if n := countFinals(reader.got); n != len(reqs)+len(more) {
		t.Errorf("%d final outcomes committed, want %d", n, len(reqs)+len(more))
	}
	for _, r := range append(reqs, more...) {
		status, ref := wantOutcome(r.PaymentID)
		if o := got[r.PaymentID]; o.Status != status || o.ProcessorRef != ref {
			t.Errorf("payment %d outcome = %v, want %v %q", r.PaymentID, o, status, ref)
		}
	}
	_, calls := fake.snapshot()
	redispatched := 0
	for _, n := range calls {
		if n > 1 {
			redispatched++
		}
	}
	t.Logf("%d payments were dispatched again after an aborted transaction (replays under the same key)", redispatched)
}

// An outcome is committed only with the offset past its record. Here one
// partition holds x (its call held at the processor) then y (answered at
// once): y finishes first, and the transactions that follow commit the
// partition's offset at x. Had y's outcome gone into them, whoever consumes
// the partition again from x after the rebalance below (this replica after
// its aborted transaction, or the partition's new owner) would commit a
// second outcome of y.
func TestOutcomeAboveUnfinishedRecordIsNotCommittedTwice(t *testing.T) {
	t.Parallel()
	cluster := kafkatest.New(t, 4, testTopics)
	fake, url := newFakeProcessor(t, nil)
	x, y, v := request(34, 34001), request(37, 37001), request(31, 31001)
	fake.holdUser, fake.holdGate = x.UserID, make(chan struct{})
	releaseX := sync.OnceFunc(func() { close(fake.holdGate) })
	t.Cleanup(releaseX) // runs before the fake server closes
	// v, on another partition, is held too, so that a commit after y
	// finished can be told by v's offset.
	vCalled, vGate := make(chan struct{}), make(chan struct{})
	calledV, releaseV := sync.OnceFunc(func() { close(vCalled) }), sync.OnceFunc(func() { close(vGate) })
	t.Cleanup(releaseV)
	fake.onCall = func(id int64) {
		if id == v.PaymentID {
			calledV()
			<-vGate
		}
	}
	opsA, opsB := stacktest.FreeAddr(t), stacktest.FreeAddr(t)
	envA := dispatcherEnv(t, cluster.Brokers(), url, "proposed", opsA)
	envB := dispatcherEnv(t, cluster.Brokers(), url, "proposed", opsB)
	envB["DATABASE_URL"] = envA["DATABASE_URL"]
	envB["DISPATCHER_TRANSACTIONAL_ID"] = "dispatcher-test-b"
	reader := newOutcomeReader(t, cluster.Brokers())

	seedPayments(t, openPool(t, envA["DATABASE_URL"]), x, y, v)
	prod := newProducer(t, cluster.Brokers())
	parts := map[int64]int32{}
	for _, r := range []wire.Requested{x, y, v} {
		rec := &kgo.Record{Topic: kafka.TopicRequested, Key: kafka.UserKey(r.UserID), Value: mustEncode(t, r)}
		if err := prod.ProduceSync(t.Context(), rec).FirstErr(); err != nil {
			t.Fatalf("produce requests: %v", err)
		}
		parts[r.PaymentID] = rec.Partition
	}
	if parts[x.PaymentID] != parts[y.PaymentID] || parts[v.PaymentID] == parts[x.PaymentID] {
		t.Fatalf("partitions %v: the test needs x and y in one partition, v in another", parts)
	}

	startDispatcher(t, envA)
	<-vCalled
	// x and v held, y answered: y's dispatch is over once two remain.
	testkit.Eventually(t, "y answered", func() bool {
		_, calls := fake.snapshot()
		return calls[y.PaymentID] == 1
	})
	testkit.Eventually(t, "x and v in flight, y's dispatch over", func() bool {
		return showsMetric(opsA, "dispatcher_payments_in_flight 2")
	})
	// v finishes; the transaction that commits past it knows y finished.
	releaseV()
	adm := kadm.NewClient(prod)
	testkit.Eventually(t, "the offset past v committed", func() bool {
		offs, err := adm.FetchOffsets(t.Context(), "dispatcher")
		if err != nil {
			return false
		}
		o, ok := offs.Lookup(kafka.TopicRequested, parts[v.PaymentID])
		return ok && o.Err == nil && o.At == 1
	})

	// A second replica joins: partitions move, A's transaction aborts,
	// and x's partition is consumed again from x.
	startDispatcher(t, envB)
	testkit.Eventually(t, "the second replica to own its partitions", func() bool {
		return showsMetric(opsB, "dispatcher_partitions_owned 2")
	})
	releaseX()

	more := []wire.Requested{request(34, 34101), request(37, 37101), request(31, 31101)}
	produceRequests(t, envA, prod, more...)
	reader.waitUntil(t, "every outcome", func(got []wire.Outcome) bool {
		seen := map[int64]bool{}
		for _, o := range got {
			if isFinal(o) {
				seen[o.PaymentID] = true
			}
		}
		for _, r := range append([]wire.Requested{x, y, v}, more...) {
			if !seen[r.PaymentID] {
				return false
			}
		}
		return true
	})
	got := finals(t, reader.got) // fails on a second final outcome
	for _, r := range append([]wire.Requested{x, y, v}, more...) {
		status, ref := wantOutcome(r.PaymentID)
		if o := got[r.PaymentID]; o.Status != status || o.ProcessorRef != ref {
			t.Errorf("payment %d outcome = %v, want %v %q", r.PaymentID, o, status, ref)
		}
	}
}

// When the group revokes a partition, its in-flight processor calls are
// cancelled before the rebalance completes, so the revoked owner never calls
// the processor for a payment while its new owner does (issue 11). The
// cancelled call may have reached the processor: the new owner's call is
// then a replay under the same key, and one outcome per payment is
// committed.
func TestRevokedPartitionCallsAreCancelled(t *testing.T) {
	t.Parallel()
	cluster := kafkatest.New(t, 4, testTopics)
	fake, url := newFakeProcessor(t, nil)
	// Every payment's first call is held at the processor until the
	// dispatcher gives it up or the test releases it.
	fake.holdFirst = make(chan struct{})
	release := sync.OnceFunc(func() { close(fake.holdFirst) })
	t.Cleanup(release) // runs before the fake server closes
	envA := dispatcherEnv(t, cluster.Brokers(), url, "proposed", stacktest.FreeAddr(t))
	envB := dispatcherEnv(t, cluster.Brokers(), url, "proposed", stacktest.FreeAddr(t))
	envB["DATABASE_URL"] = envA["DATABASE_URL"]
	envB["DISPATCHER_TRANSACTIONAL_ID"] = "dispatcher-test-b"
	// One call per payment: a batch call goes on for the payments of kept
	// partitions beside a revoked one's, which its owner abandons (its
	// answer dropped) rather than cancels; the new owner's call is then a
	// replay that the processor answers once the first call settles.
	envA["PROCESSOR_BATCH_MAX"], envB["PROCESSOR_BATCH_MAX"] = "1", "1"
	reader := newOutcomeReader(t, cluster.Brokers())

	var users []int64
	for u := int64(901); u <= 916; u++ {
		users = append(users, u)
	}
	reqs := requestsFor(users, 0, 1)
	produceRequests(t, envA, newProducer(t, cluster.Brokers()), reqs...)
	startDispatcher(t, envA)
	// A holds a call of every payment (16 in flight, one per user).
	testkit.Eventually(t, "every payment's first call held at the processor", func() bool {
		fake.mu.Lock()
		defer fake.mu.Unlock()
		return len(fake.arrived) == len(reqs)
	})

	// B joins: A's revoked partitions move to B, which calls their
	// payments again.
	startDispatcher(t, envB)
	testkit.Eventually(t, "B to call a payment of a partition it took over", func() bool {
		fake.mu.Lock()
		defer fake.mu.Unlock()
		for _, n := range fake.arrived {
			if n >= 2 {
				return true
			}
		}
		return false
	})
	release() // A's calls of the partitions it kept now answer
	reader.waitUntil(t, "every outcome", func(got []wire.Outcome) bool { return len(finals(t, got)) >= len(reqs) })

	fake.mu.Lock()
	defer fake.mu.Unlock()
	for id, n := range fake.overlaps {
		t.Errorf("payment %d: %d calls began while an earlier call of it was still running (a revoked owner kept calling)", id, n)
	}
	moved := 0
	for _, r := range reqs {
		id := r.PaymentID
		if fake.arrived[id] < 2 {
			continue // its partition stayed with A
		}
		moved++
		if fake.cancelled[id] != 1 {
			t.Errorf("payment %d called %d times, its held first call cancelled %d times; want the revoked owner's call cancelled",
				id, fake.arrived[id], fake.cancelled[id])
		}
	}
	if moved == 0 {
		t.Fatal("no payment moved to B; the test proves nothing")
	}
	t.Logf("%d of %d payments moved to B", moved, len(reqs))
	got := finals(t, reader.got) // fails on a second final outcome
	for _, r := range reqs {
		status, ref := wantOutcome(r.PaymentID)
		if o := got[r.PaymentID]; o.Status != status || o.ProcessorRef != ref {
			t.Errorf("payment %d outcome = %v, want %v %q", r.PaymentID, o, status, ref)
		}
	}
}

// TestFinalOutcomeCommitsEarly: with DISPATCHER_COMMIT_INTERVAL at ten
// minutes, final outcomes still reach a read_committed reader within the
// test, in transactions of their own started DISPATCHER_COMMIT_MIN_INTERVAL
// after the previous one; with the early commit off (0) they wait for the
// interval, which the test never sees end.
func TestFinalOutcomeCommitsEarly(t *testing.T) {
	t.Parallel()
	_, env, prod, reader := startWithCommitIntervals(t, "10m", "20ms")

	// Two rounds: the second comes after the first one's commit, so it
	// needs a second early commit.
	for round := range 2 {
		reqs := requestsFor([]int64{21, 22, 23}, round, 2)
		produceRequests(t, env, prod, reqs...)
		want := (round + 1) * len(reqs)
		reader.waitUntil(t, fmt.Sprintf("round %d's final outcomes", round+1), func(got []wire.Outcome) bool {
			return countFinals(got) >= want
		})
	}
}

// TestEarlyCommitOffWaitsForTheInterval is the control of
// TestFinalOutcomeCommitsEarly: the same work, early commits off, and no
// final outcome is readable a few seconds after the processor answered.
func TestEarlyCommitOffWaitsForTheInterval(t *testing.T) {
	t.Parallel()
	fake, env, prod, reader := startWithCommitIntervals(t, "10m", "0")
	reqs := requestsFor([]int64{31, 32, 33}, 0, 2)
	produceRequests(t, env, prod, reqs...)
	deadline := time.Now().Add(time.Minute)
	for {
		if _, calls := fake.snapshot(); len(calls) == len(reqs) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the processor was not called for every payment within a minute")
		}
		time.Sleep(10 * time.Millisecond)
	}
	reader.readFor(t, 3*time.Second) // ample for an early commit, were one made
	if n := countFinals(reader.got); n != 0 {
		t.Fatalf("%d final outcomes readable before the commit interval, want 0 with early commits off", n)
	}
}

// startWithCommitIntervals starts a dispatcher with the given
// DISPATCHER_COMMIT_INTERVAL and DISPATCHER_COMMIT_MIN_INTERVAL against a
// processor that answers at once, with a producer of requests and a
// read_committed reader of outcomes.
func startWithCommitIntervals(t *testing.T, interval, minInterval string) (*fakeProcessor, map[string]string, *kgo.Client, *outcomeReader) {
	t.Helper()
	cluster := kafkatest.New(t, 4, testTopics)
	fake, url := newFakeProcessor(t, func(int64) bool { return false })
	env := dispatcherEnv(t, cluster.Brokers(), url, "proposed", stacktest.FreeAddr(t))
	env["DISPATCHER_COMMIT_INTERVAL"] = interval
	env["DISPATCHER_COMMIT_MIN_INTERVAL"] = minInterval
	prod := newProducer(t, cluster.Brokers())
	reader := newOutcomeReader(t, cluster.Brokers())
	startDispatcher(t, env)
	return fake, env, prod, reader
}

func TestRunRejectsBadConfig(t *testing.T) {
	t.Parallel()
	env := map[string]string{"PROCESSOR_API": "v3", "PROCESSOR_RATE_LIMIT": "-1"}
	err := run(t.Context(), nil, func(k string) string { return env[k] }, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "PROCESSOR_API") || !strings.Contains(err.Error(), "PROCESSOR_RATE_LIMIT") {
		t.Fatalf("run = %v, want both config problems reported", err)
	}
}

func TestLoadConfigRejectsBadCommitMinInterval(t *testing.T) {
	t.Parallel()
	for _, v := range []string{"-1ms", "300ms", "soon"} {
		env := map[string]string{"DISPATCHER_COMMIT_MIN_INTERVAL": v}
		_, err := loadConfig(func(k string) string { return env[k] })
		if err == nil || !strings.Contains(err.Error(), "DISPATCHER_COMMIT_MIN_INTERVAL") {
			t.Errorf("DISPATCHER_COMMIT_MIN_INTERVAL=%s: loadConfig = %v, want an error naming it", v, err)
		}
	}
	env := map[string]string{"DISPATCHER_COMMIT_MIN_INTERVAL": "0"}
	if got, err := loadConfig(func(k string) string { return env[k] }); err != nil || got.CommitMinInterval != 0 {
		t.Errorf("DISPATCHER_COMMIT_MIN_INTERVAL=0: got %v, %v; want 0 (off), no error", got.CommitMinInterval, err)
	}
	// A commit interval shorter than the default minimum, the minimum unset:
	// the default follows it down, no error.
	env = map[string]string{"DISPATCHER_COMMIT_INTERVAL": "20ms"}
	if got, err := loadConfig(func(k string) string { return env[k] }); err != nil || got.CommitMinInterval != 20*time.Millisecond {
		t.Errorf("DISPATCHER_COMMIT_INTERVAL=20ms alone: got min %v, %v; want 20ms, no error", got.CommitMinInterval, err)
	}
}

func TestLoadConfigDefaults(t *testing.T) {
	t.Parallel()
	got, err := loadConfig(func(string) string { return "" })
	if err != nil {
		t.Fatalf("loadConfig: %v", err)
	}
	if !strings.HasPrefix(got.TransactionalID, "dispatcher-") {
		t.Errorf("TransactionalID = %q, want dispatcher-<hostname>", got.TransactionalID)
	}
	got.TransactionalID = ""
	want := config{
		Postgres:               postgres.Config{URL: postgres.DefaultURL, MaxConns: 32},
		Kafka:                  envconfig.Kafka{Brokers: []string{"127.0.0.1:9092"}},
		Ops:                    envconfig.Ops{LogLevel: "info", Addr: ":9101", ShutdownTimeout: 30 * time.Second, HTTP: envconfig.DefaultHTTPServer},
		ProcessorURL:           "http://127.0.0.1:8090",
		ProcessorAPI:           "proposed",
		ProcessorTimeout:       2 * time.Second,
		ProcessorMaxAttempts:   5,
		ProcessorStartRate:     50,
		ProcessorBatchMax:      64,
		ProcessorBatchInFlight: 2,
		ProcessorKeyRetention:  24 * time.Hour,
		GuardRetryFor:          30 * time.Second,
		BreakerFailures:        10,
		BreakerOpen:            2 * time.Second,
		MaxInFlight:            512,
		MaxBuffered:            10000,
		MaxPollRecords:         1000,
		CommitInterval:         200 * time.Millisecond,
		CommitMinInterval:      50 * time.Millisecond,
		Group:                  "dispatcher",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
}

// mustEncode is r as a payments.requested record value.
func mustEncode(t *testing.T, r wire.Requested) []byte {
	t.Helper()
	b, err := wire.EncodeRequested(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func countWhere(reqs []wire.Requested, pred func(int64) bool) int {
	n := 0
	for _, r := range reqs {
		if pred(r.PaymentID) {
			n++
		}
	}
	return n
}

// waitMetrics waits until /metrics has every sample in wants (counters
// move just after the transaction they count has committed), and fails
// the test naming the ones still missing when they do not all come.
func waitMetrics(t *testing.T, addr string, wants ...string) {
	t.Helper()
	var missing []string
	t.Cleanup(func() {
		if len(missing) > 0 {
			t.Logf("/metrics lacked %q", missing)
		}
	})
	testkit.Eventually(t, "/metrics to show every sample wanted", func() bool {
		missing = missing[:0]
		metrics := scrape(t, addr)
		for _, want := range wants {
			if !strings.Contains(metrics, want+"\n") {
				missing = append(missing, want)
			}
		}
		return len(missing) == 0
	})
}

// showsMetric reports whether the ops server at addr is up and its
// /metrics has the sample want.
func showsMetric(addr, want string) bool {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return err == nil && strings.Contains(string(b), want+"\n")
}

func scrape(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scrape metrics: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func testLogger(t *testing.T) *slog.Logger {
	t.Helper()
	return slog.New(slog.NewJSONHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}
