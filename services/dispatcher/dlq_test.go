package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/finsvc/finance/pkg/dlq"
	"github.com/finsvc/finance/pkg/kafka"
	"github.com/finsvc/finance/pkg/kafkatest"
	"github.com/finsvc/finance/pkg/payment"
	"github.com/finsvc/finance/pkg/stacktest"
	"github.com/finsvc/finance/pkg/wire"
)

// dlqReader reads payments.requested.dlq with read_committed isolation, so
// it sees only dead letters whose transaction committed.
type dlqReader struct {
	cl  *kgo.Client
	got []*kgo.Record
}

func newDLQReader(t *testing.T, brokers []string) *dlqReader {
	t.Helper()
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(brokers...),
		kgo.ConsumeTopics(kafka.DLQTopic(kafka.TopicRequested)),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(100*time.Millisecond),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return &dlqReader{cl: cl}
}

// waitFor reads until at least n dead letters are in.
func (r *dlqReader) waitFor(t *testing.T, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 45*time.Second)
	defer cancel()
	for len(r.got) < n {
		r.poll(ctx)
		if ctx.Err() != nil {
			t.Fatalf("gave up waiting for %d dead letters; read %d", n, len(r.got))
		}
	}
}

// drain reads whatever else arrives within d.
func (r *dlqReader) drain(t *testing.T, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	for ctx.Err() == nil {
		r.poll(ctx)
	}
}

func (r *dlqReader) poll(ctx context.Context) {
	fs := r.cl.PollFetches(ctx)
	fs.EachRecord(func(rec *kgo.Record) { r.got = append(r.got, rec) })
}

// byOriginal indexes dead letters by "partition/offset" of the original
// record, failing on a record dead-lettered twice.
func (r *dlqReader) byOriginal(t *testing.T) map[string]*kgo.Record {
	t.Helper()
	m := map[string]*kgo.Record{}
	for _, rec := range r.got {
		h := headers(rec)
		k := h[dlq.HeaderOriginalPartition] + "/" + h[dlq.HeaderOriginalOffset]
		if _, dup := m[k]; dup {
			t.Errorf("record %s of payments.requested dead-lettered twice", k)
		}
		m[k] = rec
	}
	return m
}

func headers(r *kgo.Record) map[string]string {
	h := map[string]string{}
	for _, kv := range r.Headers {
		h[kv.Key] = string(kv.Value)
	}
	return h
}

// checkLetter fails unless dl is the dead letter of orig with reason and
// attempts, its first-seen time within [from, to].
func checkLetter(t *testing.T, dl, orig *kgo.Record, reason string, attempts int, from, to time.Time) {
	t.Helper()
	h := headers(dl)
	want := map[string]string{
		dlq.HeaderReason:            reason,
		dlq.HeaderAttempts:          strconv.Itoa(attempts),
		dlq.HeaderOriginalTopic:     kafka.TopicRequested,
		dlq.HeaderOriginalPartition: strconv.Itoa(int(orig.Partition)),
		dlq.HeaderOriginalOffset:    strconv.FormatInt(orig.Offset, 10),
		dlq.HeaderSource:            "dispatcher",
	}
	got := map[string]string{}
	for k := range want {
		got[k] = h[k]
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("dead letter of offset %d: headers (-want +got):\n%s", orig.Offset, diff)
	}
	if h[dlq.HeaderError] == "" {
		t.Errorf("dead letter of offset %d has no %s header", orig.Offset, dlq.HeaderError)
	}
	first, err := time.Parse(time.RFC3339Nano, h[dlq.HeaderFirstSeen])
	if err != nil || first.Before(from) || first.After(to) {
		t.Errorf("dead letter of offset %d: first seen %q (%v), want a time between %v and %v", orig.Offset, h[dlq.HeaderFirstSeen], err, from, to)
	}
	if string(dl.Key) != string(orig.Key) || string(dl.Value) != string(orig.Value) {
		t.Errorf("dead letter of offset %d: key %q value %q, want the original's %q %q", orig.Offset, dl.Key, dl.Value, orig.Key, orig.Value)
	}
}

func TestInvalidRecordsAreDeadLetteredWithoutBlocking(t *testing.T) {
	t.Parallel()
	// One partition: the poison records sit in front of valid ones.
	cluster := kafkatest.New(t, 1, testTopics)
	_, url := newFakeProcessor(t, nil)
	opsAddr := stacktest.FreeAddr(t)
	env := dispatcherEnv(t, cluster.Brokers(), url, "proposed", opsAddr)
	prod := newProducer(t, cluster.Brokers())
	outcomes := newOutcomeReader(t, cluster.Brokers())
	letters := newDLQReader(t, cluster.Brokers())

	start := time.Now()
	poison := []struct {
		rec    *kgo.Record
		reason string
	}{
		{&kgo.Record{Topic: kafka.TopicRequested, Key: kafka.UserKey(501), Value: []byte("\xff not protobuf")}, "undecodable"},
		{&kgo.Record{Topic: kafka.TopicRequested, Key: kafka.UserKey(502), Value: mustEncode(t, wire.Requested{Amount: -5})}, "missing_ids"},
		// User 504's payment keyed as user 503's.
		{&kgo.Record{Topic: kafka.TopicRequested, Key: kafka.UserKey(503), Value: mustEncode(t, request(504, 504001))}, "key_mismatch"},
		{&kgo.Record{Topic: kafka.TopicRequested, Key: []byte("not-a-user"), Value: mustEncode(t, request(505, 505001))}, "key_mismatch"},
	}
	for _, p := range poison {
		if err := prod.ProduceSync(t.Context(), p.rec).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	// Later records of the same partition, some of the same users.
	first := requestsFor([]int64{501, 502, 503, 506}, 0, 3)
	produceRequests(t, env, prod, first...)
	stop := startDispatcher(t, env)

	outcomes.waitUntil(t, "the valid payments' outcomes", func(got []wire.Outcome) bool {
		return countFinals(got) >= len(first)
	})
	letters.waitFor(t, len(poison))
	got := finals(t, outcomes.got)
	for _, r := range first {
		status, ref := wantOutcome(r.PaymentID)
		if o := got[r.PaymentID]; o.Status != status || o.ProcessorRef != ref {
			t.Errorf("payment %d outcome = %v, want %v %q", r.PaymentID, o, status, ref)
		}
	}
	if len(got) != len(first) {
		t.Errorf("%d final outcomes, want %d (poison records get none)", len(got), len(first))
	}
	idx := letters.byOriginal(t)
	for _, p := range poison {
		dl, ok := idx[fmt.Sprintf("%d/%d", p.rec.Partition, p.rec.Offset)]
		if !ok {
			t.Errorf("%s record at offset %d not dead-lettered", p.reason, p.rec.Offset)
			continue
		}
		checkLetter(t, dl, p.rec, p.reason, 1, start, time.Now())
	}
	if h := headers(idx[fmt.Sprintf("0/%d", poison[2].rec.Offset)]); h[dlq.HeaderPaymentID] != "504001" || h[dlq.HeaderUserID] != "504" {
		t.Errorf("key_mismatch dead letter: payment %q user %q, want 504001 and 504", h[dlq.HeaderPaymentID], h[dlq.HeaderUserID])
	}
	waitMetrics(t, opsAddr,
		`dispatcher_dead_letters_total{reason="undecodable"} 1`,
		`dispatcher_dead_letters_total{reason="missing_ids"} 1`,
		`dispatcher_dead_letters_total{reason="key_mismatch"} 2`,
	)
	stop()

	// A restart with the same group and transactional id: the dead letters
	// were committed with the offsets, so none is produced again. A new
	// poison record and new payments land behind the old ones.
	again := &kgo.Record{Topic: kafka.TopicRequested, Key: kafka.UserKey(507), Value: []byte("\x00\xff still not protobuf")}
	if err := prod.ProduceSync(t.Context(), again).FirstErr(); err != nil {
		t.Fatal(err)
	}
	second := requestsFor([]int64{501, 502, 503, 506}, 1, 2)
	produceRequests(t, env, prod, second...)
	stop = startDispatcher(t, env)
	outcomes.waitUntil(t, "the second round's outcomes", func(got []wire.Outcome) bool {
		return countFinals(got) >= len(first)+len(second)
	})
	letters.waitFor(t, len(poison)+1)
	stop()
	letters.drain(t, time.Second)
	if len(letters.got) != len(poison)+1 {
		t.Errorf("%d dead letters after the restart, want %d", len(letters.got), len(poison)+1)
	}
	idx = letters.byOriginal(t) // fails on duplicates
	if dl, ok := idx[fmt.Sprintf("0/%d", again.Offset)]; !ok {
		t.Errorf("the poison record produced after the restart was not dead-lettered")
	} else {
		checkLetter(t, dl, again, "undecodable", 1, start, time.Now())
	}
	if n := len(finals(t, outcomes.got)); n != len(first)+len(second) {
		t.Errorf("%d final outcomes, want %d", n, len(first)+len(second))
	}
}

func TestSpentBudgetIsUnknownAndDeadLettered(t *testing.T) {
	t.Parallel()
	cluster := kafkatest.New(t, 2, testTopics)
	fake, url := newFakeProcessor(t, nil)
	const (
		ambiguousID = 601002 // 500 on every call: may have executed
		refusedID   = 602002 // 429 on every call: never executed
	)
	fake.ambiguous = func(id int64) bool { return id == ambiguousID }
	fake.refuse = func(id int64) bool { return id == refusedID }
	opsAddr := stacktest.FreeAddr(t)
	env := dispatcherEnv(t, cluster.Brokers(), url, "proposed", opsAddr)
	env["PROCESSOR_MAX_ATTEMPTS"] = "3"
	env["PROCESSOR_BREAKER_FAILURES"] = "1000" // the budget, not the breaker, decides
	prod := newProducer(t, cluster.Brokers())
	outcomes := newOutcomeReader(t, cluster.Brokers())
	letters := newDLQReader(t, cluster.Brokers())

	start := time.Now()
	reqs := requestsFor([]int64{601, 602, 603}, 0, 3)
	seedPayments(t, openPool(t, env["DATABASE_URL"]), reqs...)
	var recs []*kgo.Record
	for _, r := range reqs {
		recs = append(recs, &kgo.Record{Topic: kafka.TopicRequested, Key: kafka.UserKey(r.UserID), Value: mustEncode(t, r)})
	}
	if err := prod.ProduceSync(t.Context(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	stop := startDispatcher(t, env)

	// Both are read_committed: the unknown outcome and its dead letter
	// are visible, hence committed.
	outcomes.waitUntil(t, "every outcome", func(got []wire.Outcome) bool { return countFinals(got) >= len(reqs) })
	letters.waitFor(t, 1)
	got := finals(t, outcomes.got)
	for _, r := range reqs {
		o := got[r.PaymentID]
		switch r.PaymentID {
		case ambiguousID:
			if o.Status != payment.StatusUnknown || o.Attempts != 3 || !strings.Contains(o.Reason, "no definite answer after 3 calls") {
				t.Errorf("ambiguous payment outcome = %v, want unknown after 3 attempts", o)
			}
		case refusedID:
			if o.Status != payment.StatusFailed || !strings.HasPrefix(o.Reason, "not executed") {
				t.Errorf("refused payment outcome = %v, want failed as not executed", o)
			}
		default:
			status, ref := wantOutcome(r.PaymentID)
			if o.Status != status || o.ProcessorRef != ref {
				t.Errorf("payment %d outcome = %v, want %v %q", r.PaymentID, o, status, ref)
			}
		}
	}
	// The users' later payments went on after the spent budget, in order.
	checkUserOrder(t, fake, outcomes, reqs)
	waitMetrics(t, opsAddr, `dispatcher_dead_letters_total{reason="retry_budget_spent"} 1`)

	stop()
	letters.drain(t, time.Second)
	if len(letters.got) != 1 {
		t.Fatalf("%d dead letters, want 1 (the unknown payment's; a never-executed payment is failed, not dead-lettered)", len(letters.got))
	}
	var orig *kgo.Record
	for _, r := range recs {
		if string(r.Value) == string(mustEncode(t, request(601, ambiguousID))) {
			orig = r
		}
	}
	dl := letters.got[0]
	checkLetter(t, dl, orig, "retry_budget_spent", 3, start, time.Now())
	h := headers(dl)
	if h[dlq.HeaderPaymentID] != strconv.Itoa(ambiguousID) || h[dlq.HeaderUserID] != "601" {
		t.Errorf("dead letter: payment %q user %q, want %d and 601", h[dlq.HeaderPaymentID], h[dlq.HeaderUserID], ambiguousID)
	}
	if !strings.Contains(h[dlq.HeaderError], "no definite answer") {
		t.Errorf("dead letter error %q, want the unknown outcome's reason", h[dlq.HeaderError])
	}

	// A restart does not dead-letter it again, nor call the processor again.
	_, before := fake.snapshot()
	more := requestsFor([]int64{601, 602, 603}, 1, 1)
	produceRequests(t, env, prod, more...)
	stop = startDispatcher(t, env)
	outcomes.waitUntil(t, "the next round", func(got []wire.Outcome) bool {
		return countFinals(got) >= len(reqs)+len(more)
	})
	stop()
	letters.drain(t, time.Second)
	if len(letters.got) != 1 {
		t.Errorf("%d dead letters after the restart, want still 1", len(letters.got))
	}
	if _, after := fake.snapshot(); after[ambiguousID] != before[ambiguousID] {
		t.Errorf("payment %d called %d times after the restart, want none", ambiguousID, after[ambiguousID]-before[ambiguousID])
	}
}

// A payment whose every call was refused (429) was not executed by this
// dispatcher, but an earlier call under its key may have executed it (an
// earlier owner's call that timed out after the processor settled it): on
// the proposed API it is failed "not executed" only when the processor's
// lookup by key does not find it (issue 11). Found → its outcome; lookup
// failing → unknown and dead-lettered for reconciliation.
func TestNotExecutedOnlyAfterLookup(t *testing.T) {
	t.Parallel()
	cluster := kafkatest.New(t, 2, testTopics)
	fake, url := newFakeProcessor(t, nil)
	const (
		executedEarlier = 611001 // an earlier call executed it
		declinedEarlier = 612003 // an earlier call was declined (declines(612003))
		neverSeen       = 613001 // the processor never settled it
		lookupDown      = 614001 // its lookup answers 503
	)
	refused := map[int64]bool{executedEarlier: true, declinedEarlier: true, neverSeen: true, lookupDown: true}
	fake.refuse = func(id int64) bool { return refused[id] }
	fake.lookupFails = func(key string) bool { return key == payment.ProcessorKey(uidOf(lookupDown)) }
	fake.settleEarlier(request(611, executedEarlier))
	fake.settleEarlier(request(612, declinedEarlier))
	opsAddr := stacktest.FreeAddr(t)
	env := dispatcherEnv(t, cluster.Brokers(), url, "proposed", opsAddr)
	env["PROCESSOR_MAX_ATTEMPTS"] = "3"
	env["PROCESSOR_BREAKER_FAILURES"] = "1000" // the budget, not the breaker, decides
	outcomes := newOutcomeReader(t, cluster.Brokers())
	letters := newDLQReader(t, cluster.Brokers())

	reqs := requestsFor([]int64{611, 612, 613, 614, 615}, 0, 3)
	produceRequests(t, env, newProducer(t, cluster.Brokers()), reqs...)
	stop := startDispatcher(t, env)
	outcomes.waitUntil(t, "every outcome", func(got []wire.Outcome) bool { return countFinals(got) >= len(reqs) })
	letters.waitFor(t, 1)
	waitMetrics(t, opsAddr,
		`dispatcher_dead_letters_total{reason="lookup_failed"} 1`,
		`dispatcher_processor_lookups_total{result="succeeded"} 1`,
		`dispatcher_processor_lookups_total{result="declined"} 1`,
		`dispatcher_processor_lookups_total{result="not_found"} 1`,
		`dispatcher_processor_lookups_total{result="error"} 1`)
	stop()

	got := finals(t, outcomes.got)
	for _, r := range reqs {
		id, o := r.PaymentID, got[r.PaymentID]
		switch id {
		case executedEarlier:
			if o.Status != payment.StatusSucceeded || o.ProcessorRef != "ref-earlier-611001" {
				t.Errorf("payment executed by an earlier call: outcome %v, want succeeded with the earlier call's ref", o)
			}
		case declinedEarlier:
			if o.Status != payment.StatusFailed || o.Reason != "card declined" {
				t.Errorf("payment declined for an earlier call: outcome %v, want failed with the processor's reason", o)
			}
		case neverSeen:
			if o.Status != payment.StatusFailed || !strings.HasPrefix(o.Reason, "not executed") ||
				!strings.Contains(o.Reason, "lookup by key: not found") {
				t.Errorf("payment the processor never settled: outcome %v, want failed as not executed after the lookup", o)
			}
		case lookupDown:
			if o.Status != payment.StatusUnknown || !strings.Contains(o.Reason, "the lookup failed") {
				t.Errorf("payment whose lookup failed: outcome %v, want unknown", o)
			}
		default:
			status, ref := wantOutcome(id)
			if o.Status != status || o.ProcessorRef != ref {
				t.Errorf("payment %d outcome = %v, want %v %q", id, o, status, ref)
			}
		}
	}
	// Each refused payment was looked up exactly once; no other was.
	fake.mu.Lock()
	for _, r := range reqs {
		id := r.PaymentID
		want := map[bool]int{true: 1}[refused[id]]
		if n := fake.lookups[payment.ProcessorKey(uidOf(id))]; n != want {
			t.Errorf("payment %d looked up %d times, want %d", id, n, want)
		}
	}
	fake.mu.Unlock()
	checkUserOrder(t, fake, outcomes, reqs)

	letters.drain(t, 500*time.Millisecond)
	if len(letters.got) != 1 {
		t.Fatalf("%d dead letters, want 1 (the payment whose lookup failed)", len(letters.got))
	}
	h := headers(letters.got[0])
	if h[dlq.HeaderReason] != "lookup_failed" || h[dlq.HeaderPaymentID] != strconv.Itoa(lookupDown) || h[dlq.HeaderAttempts] != "3" {
		t.Errorf("dead letter reason %q payment %q attempts %q, want lookup_failed, %d, 3", h[dlq.HeaderReason], h[dlq.HeaderPaymentID], h[dlq.HeaderAttempts], lookupDown)
	}
}

// The as-is API documents one refusal, 503 {"error":"over capacity"}. Any
// other 503 (here a proxy's, after it forwarded the call and the processor
// executed it) is ambiguous: the payment is never called again (a second
// call would execute it twice); it ends unknown, dead-lettered for
// reconciliation (issue 11).
func TestAsIsProxy503IsAmbiguous(t *testing.T) {
	t.Parallel()
	cluster := kafkatest.New(t, 2, testTopics)
	fake, url := newFakeProcessor(t, nil)
	const behindProxy = 622001
	fake.proxy503 = func(id int64) bool { return id == behindProxy }
	opsAddr := stacktest.FreeAddr(t)
	env := dispatcherEnv(t, cluster.Brokers(), url, "as-is", opsAddr)
	env["PROCESSOR_BREAKER_FAILURES"] = "1000"
	outcomes := newOutcomeReader(t, cluster.Brokers())
	letters := newDLQReader(t, cluster.Brokers())

	reqs := requestsFor([]int64{621, 622, 623}, 0, 2)
	produceRequests(t, env, newProducer(t, cluster.Brokers()), reqs...)
	stop := startDispatcher(t, env)
	outcomes.waitUntil(t, "every outcome", func(got []wire.Outcome) bool { return countFinals(got) >= len(reqs) })
	letters.waitFor(t, 1)
	waitMetrics(t, opsAddr, `dispatcher_dead_letters_total{reason="ambiguous_not_retried"} 1`,
		`dispatcher_processor_calls_total{result="unavailable"} 1`)
	stop()

	got := finals(t, outcomes.got)
	_, calls := fake.snapshot()
	for _, r := range reqs {
		id, o := r.PaymentID, got[r.PaymentID]
		if n := calls[id]; n != 1 {
			t.Errorf("payment %d called %d times, want exactly 1 (as-is: a second call executes twice)", id, n)
		}
		if id == behindProxy {
			if o.Status != payment.StatusUnknown || !strings.Contains(o.Reason, "HTTP 503") {
				t.Errorf("payment answered by a proxy's 503: outcome %v, want unknown", o)
			}
			continue
		}
		status, ref := wantOutcome(id)
		if o.Status != status || o.ProcessorRef != ref {
			t.Errorf("payment %d outcome = %v, want %v %q", id, o, status, ref)
		}
	}
	checkUserOrder(t, fake, outcomes, reqs)
	letters.drain(t, 500*time.Millisecond)
	if len(letters.got) != 1 {
		t.Fatalf("%d dead letters, want 1", len(letters.got))
	}
	if h := headers(letters.got[0]); h[dlq.HeaderReason] != "ambiguous_not_retried" || h[dlq.HeaderPaymentID] != strconv.Itoa(behindProxy) || h[dlq.HeaderAttempts] != "1" {
		t.Errorf("dead letter reason %q payment %q attempts %q, want ambiguous_not_retried, %d, 1", h[dlq.HeaderReason], h[dlq.HeaderPaymentID], h[dlq.HeaderAttempts], behindProxy)
	}
}
