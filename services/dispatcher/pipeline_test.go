package main

import (
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kadm"
	"golang.org/x/time/rate"

	"github.com/finsvc/finance/pkg/kafka"
	"github.com/finsvc/finance/pkg/kafkatest"
	"github.com/finsvc/finance/pkg/stacktest"
	"github.com/finsvc/finance/pkg/testkit"
	"github.com/finsvc/finance/pkg/wire"
)

// metricValue reads one unlabelled (or fully labelled) sample from /metrics.
func metricValue(t *testing.T, addr, name string) float64 {
	t.Helper()
	for _, line := range strings.Split(scrape(t, addr), "\n") {
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err != nil {
				t.Fatalf("metric %s: %v", name, err)
			}
			return v
		}
	}
	return math.NaN()
}

// tryMetric is metricValue for a goroutine: false when not readable.
func tryMetric(addr, name string) (float64, bool) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			return v, err == nil
		}
	}
	return 0, false
}

// checkUserOrder fails unless every user's payments reached the processor
// and payments.outcomes in the order they were requested.
func checkUserOrder(t *testing.T, fake *fakeProcessor, reader *outcomeReader, reqs []wire.Requested) {
	t.Helper()
	want := byUser(reqs)
	order, _ := fake.snapshot()
	// Replays repeat an id; the first call of each id is what counts.
	firsts := map[int64][]int64{}
	for u, ids := range order {
		seen := map[int64]bool{}
		for _, id := range ids {
			if !seen[id] {
				seen[id] = true
				firsts[u] = append(firsts[u], id)
			}
		}
	}
	if diff := cmp.Diff(want, firsts); diff != "" {
		t.Errorf("processor call order per user (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, finalsByUser(reader.got)); diff != "" {
		t.Errorf("outcome order per user (-want +got):\n%s", diff)
	}
}

// byUser returns the payment ids of reqs per user, in request order.
func byUser(reqs []wire.Requested) map[int64][]int64 {
	m := map[int64][]int64{}
	for _, r := range reqs {
		m[r.UserID] = append(m[r.UserID], r.PaymentID)
	}
	return m
}

// finalsByUser returns the payment ids of the final outcomes in got per
// user, in the order they were read.
func finalsByUser(got []wire.Outcome) map[int64][]int64 {
	m := map[int64][]int64{}
	for _, o := range got {
		if isFinal(o) {
			m[o.UserID] = append(m[o.UserID], o.PaymentID)
		}
	}
	return m
}

func TestUsersOfOnePartitionRunInParallelInOrder(t *testing.T) {
	t.Parallel()
	// One partition: any parallelism comes from different users, and any
	// overtaking within a user would show in the order.
	cluster := kafkatest.New(t, 1, testTopics)
	fake, url := newFakeProcessor(t, func(id int64) bool { return id%2 == 1 })
	env := dispatcherEnv(t, cluster.Brokers(), url, "proposed", stacktest.FreeAddr(t))
	startDispatcher(t, env)

	var users []int64
	for u := int64(1); u <= 20; u++ {
		users = append(users, u)
	}
	reqs := requestsFor(users, 0, 5)
	produceRequests(t, env, newProducer(t, cluster.Brokers()), reqs...)
	reader := newOutcomeReader(t, cluster.Brokers())
	reader.waitUntil(t, "every outcome", func(got []wire.Outcome) bool { return countFinals(got) >= len(reqs) })

	checkUserOrder(t, fake, reader, reqs)
	if n := len(finals(t, reader.got)); n != len(reqs) {
		t.Errorf("%d final outcomes, want %d", n, len(reqs))
	}
	fake.mu.Lock()
	maxActive := fake.maxActive
	fake.mu.Unlock()
	if maxActive < 2 {
		t.Errorf("at most %d concurrent processor calls for 20 users of one partition, want parallel users", maxActive)
	}
	if maxActive > 16 {
		t.Errorf("%d concurrent processor calls, want at most DISPATCHER_MAX_IN_FLIGHT=16", maxActive)
	}
}

func TestShareOfLimitFollowsRebalance(t *testing.T) {
	t.Parallel()
	cluster := kafkatest.New(t, 12, testTopics)
	_, url := newFakeProcessor(t, nil)
	envA := dispatcherEnv(t, cluster.Brokers(), url, "proposed", stacktest.FreeAddr(t))
	envB := dispatcherEnv(t, cluster.Brokers(), url, "proposed", stacktest.FreeAddr(t))
	envB["DATABASE_URL"] = envA["DATABASE_URL"] // one database behind both replicas
	envA["PROCESSOR_RATE_LIMIT"], envB["PROCESSOR_RATE_LIMIT"] = "300", "300"
	envB["DISPATCHER_TRANSACTIONAL_ID"] = "dispatcher-test-b"
	a, b := envA["OPS_ADDR"], envB["OPS_ADDR"]
	read := func(addr, name string) float64 {
		if v, ok := tryMetric(addr, name); ok {
			return v
		}
		return math.NaN() // not up yet
	}
	share := func(addr string) float64 { return read(addr, "dispatcher_pacer_share_per_second") }
	owned := func(addr string) float64 { return read(addr, "dispatcher_partitions_owned") }

	startDispatcher(t, envA)
	testkit.Eventually(t, "replica A to own every partition", func() bool { return owned(a) == 12 })
	if got := share(a); got != 300 {
		t.Errorf("A alone: share %v, want all of L = 300", got)
	}

	stopB := startDispatcher(t, envB)
	testkit.Eventually(t, "the partitions to be split", func() bool {
		oa, ob := owned(a), owned(b)
		return oa > 0 && ob > 0 && oa+ob == 12
	})
	sa, sb := share(a), share(b)
	if math.Abs(sa+sb-300) > 1e-9 || math.Abs(sa-300*owned(a)/12) > 1e-9 || math.Abs(sb-300*owned(b)/12) > 1e-9 {
		t.Errorf("A and B: shares %v + %v for %v and %v partitions, want L x owned/12 summing to 300", sa, sb, owned(a), owned(b))
	}
	if got := metricValue(t, a, "dispatcher_processor_rate_limit_per_second"); got != 300 {
		t.Errorf("A: L = %v, want 300", got)
	}

	stopB()
	testkit.Eventually(t, "A to take every partition back", func() bool { return owned(a) == 12 })
	if got := share(a); got != 300 {
		t.Errorf("A after B left: share %v, want 300", got)
	}
}

func TestAdaptsToRateLimit(t *testing.T) {
	t.Parallel()
	cluster := kafkatest.New(t, 2, testTopics)
	fake, url := newFakeProcessor(t, nil)
	// The processor takes 40 calls per second; the dispatcher is told 400.
	fake.limiter = rate.NewLimiter(40, 1)
	opsAddr := stacktest.FreeAddr(t)
	env := dispatcherEnv(t, cluster.Brokers(), url, "proposed", opsAddr)
	env["PROCESSOR_RATE_LIMIT"] = "400"
	env["PROCESSOR_MAX_ATTEMPTS"] = "100"
	startDispatcher(t, env)

	var users []int64
	for u := int64(101); u <= 130; u++ {
		users = append(users, u)
	}
	reqs := requestsFor(users, 0, 5)
	produceRequests(t, env, newProducer(t, cluster.Brokers()), reqs...)
	reader := newOutcomeReader(t, cluster.Brokers())
	reader.waitUntil(t, "every outcome", func(got []wire.Outcome) bool { return countFinals(got) >= len(reqs) })

	// Nothing lost: every payment succeeded (or was declined) once.
	got := finals(t, reader.got)
	for _, r := range reqs {
		status, _ := wantOutcome(r.PaymentID)
		if o := got[r.PaymentID]; o.Status != status {
			t.Errorf("payment %d outcome = %v, want %v", r.PaymentID, o, status)
		}
	}
	checkUserOrder(t, fake, reader, reqs)

	fake.mu.Lock()
	limited := fake.rateLimited
	fake.mu.Unlock()
	if limited == 0 {
		t.Fatalf("the processor never answered 429; the test proves nothing")
	}
	if got := metricValue(t, opsAddr, "dispatcher_processor_rate_limited_total"); got != float64(limited) {
		t.Errorf("dispatcher_processor_rate_limited_total = %v, want the %d 429s answered", got, limited)
	}
	// Multiplicative decrease: the pacer left the configured 400/s.
	if r := metricValue(t, opsAddr, "dispatcher_pacer_rate_per_second"); r >= 400 {
		t.Errorf("pacer rate %v after %d 429s, want below the configured 400", r, limited)
	}
}

func TestBreakerHoldsCallsDuringOutage(t *testing.T) {
	t.Parallel()
	cluster := kafkatest.New(t, 2, testTopics)
	fake, url := newFakeProcessor(t, nil)
	fake.outage.Store(true)
	opsAddr := stacktest.FreeAddr(t)
	env := dispatcherEnv(t, cluster.Brokers(), url, "proposed", opsAddr)
	// A budget of 3 calls per payment: only the breaker holding calls
	// (without spending it) lets every payment through the outage.
	env["PROCESSOR_MAX_ATTEMPTS"] = "3"
	env["PROCESSOR_BREAKER_FAILURES"] = "3"
	env["PROCESSOR_BREAKER_OPEN"] = "100ms"
	startDispatcher(t, env)

	reqs := requestsFor([]int64{201, 202, 203, 204, 205}, 0, 4)
	produceRequests(t, env, newProducer(t, cluster.Brokers()), reqs...)
	testkit.Eventually(t, "the breaker to open and fail several probes", func() bool {
		v, ok := tryMetric(opsAddr, `dispatcher_processor_breaker_transitions_total{to="open"}`)
		return ok && v >= 3
	})
	fake.outage.Store(false)

	reader := newOutcomeReader(t, cluster.Brokers())
	reader.waitUntil(t, "every outcome", func(got []wire.Outcome) bool { return countFinals(got) >= len(reqs) })
	got := finals(t, reader.got)
	for _, r := range reqs {
		status, ref := wantOutcome(r.PaymentID)
		if o := got[r.PaymentID]; o.Status != status || o.ProcessorRef != ref {
			t.Errorf("payment %d outcome = %v, want %v %q", r.PaymentID, o, status, ref)
		}
	}
	checkUserOrder(t, fake, reader, reqs)
	if s := metricValue(t, opsAddr, "dispatcher_processor_breaker_state"); s != 0 {
		t.Errorf("breaker state %v after recovery, want 0 (closed)", s)
	}
	fake.mu.Lock()
	outaged := fake.outaged
	fake.mu.Unlock()
	// Without the breaker every held call would hit the processor over
	// and over; with it, calls stop until a probe.
	t.Logf("%d calls answered 503 during the outage", outaged)
}

// While the record at offset 0 is unfinished, the records behind it are
// dispatched but neither their offsets nor their outcomes are committed: an
// outcome goes into the transaction only with the offset past its record,
// so the final outcomes come out in the order of their records.
func TestCommitsOnlyUpToLowestUnfinishedRecord(t *testing.T) {
	t.Parallel()
	cluster := kafkatest.New(t, 1, testTopics)
	fake, url := newFakeProcessor(t, nil)
	// User 301's first payment (offset 0) hangs at the processor while
	// every other user's payments finish behind it.
	fake.holdUser, fake.holdGate = 301, make(chan struct{})
	release := sync.OnceFunc(func() { close(fake.holdGate) })
	t.Cleanup(release)
	opsAddr := stacktest.FreeAddr(t)
	env := dispatcherEnv(t, cluster.Brokers(), url, "proposed", opsAddr)
	stop := startDispatcher(t, env)

	reqs := requestsFor([]int64{301, 302, 303, 304}, 0, 3) // 301's first is offset 0
	produceRequests(t, env, newProducer(t, cluster.Brokers()), reqs...)
	reader := newOutcomeReader(t, cluster.Brokers())
	// Every other user's payments are called (301's later ones wait for
	// its first) and their dispatches are over: only 301's first is in
	// flight.
	testkit.Eventually(t, "the other users' calls", func() bool {
		_, calls := fake.snapshot()
		for _, r := range reqs {
			if r.UserID != 301 && calls[r.PaymentID] == 0 {
				return false
			}
		}
		return true
	})
	testkit.Eventually(t, "only the held call in flight", func() bool {
		return showsMetric(opsAddr, "dispatcher_payments_in_flight 1")
	})

	adm := kadm.NewClient(newProducer(t, cluster.Brokers()))
	committed := func() int64 {
		offs, err := adm.FetchOffsets(t.Context(), "dispatcher")
		if err != nil {
			t.Fatalf("fetch offsets: %v", err)
		}
		o, ok := offs.Lookup(kafka.TopicRequested, 0)
		if !ok {
			return -1
		}
		return o.At
	}
	// Transactions commit meanwhile (the other dispatches finished), but
	// never past offset 0.
	testkit.Eventually(t, "a transaction to commit offset 0", func() bool { return committed() == 0 })

	release()
	reader.waitUntil(t, "every outcome", func(got []wire.Outcome) bool { return countFinals(got) >= len(reqs) })
	checkUserOrder(t, fake, reader, reqs)
	// One partition: the outcomes are in the order of their records,
	// 301's first before all the others that finished earlier.
	var want, got []int64
	for _, r := range reqs {
		want = append(want, r.PaymentID)
	}
	for _, o := range reader.got {
		if isFinal(o) {
			got = append(got, o.PaymentID)
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("final outcomes not in the order of their records (-want +got):\n%s", diff)
	}
	stop()
	if got := committed(); got != int64(len(reqs)) {
		t.Errorf("committed offset %d after everything finished, want %d", got, len(reqs))
	}
}

func TestBufferAndInFlightAreBounded(t *testing.T) {
	t.Parallel()
	cluster := kafkatest.New(t, 1, testTopics)
	fake, url := newFakeProcessor(t, func(int64) bool { return true })
	opsAddr := stacktest.FreeAddr(t)
	env := dispatcherEnv(t, cluster.Brokers(), url, "proposed", opsAddr)
	env["DISPATCHER_MAX_IN_FLIGHT"] = "3"
	env["DISPATCHER_MAX_BUFFERED"] = "40"
	env["DISPATCHER_MAX_POLL_RECORDS"] = "10"

	var users []int64
	for u := int64(401); u <= 430; u++ {
		users = append(users, u)
	}
	reqs := requestsFor(users, 0, 8)
	produceRequests(t, env, newProducer(t, cluster.Brokers()), reqs...)
	// The buffer is sampled at every processor call, while the poller
	// fills it and calls drain it.
	var sampleMu sync.Mutex
	samples, maxBuffered := 0, 0.0
	fake.onCall = func(int64) {
		if v, ok := tryMetric(opsAddr, "dispatcher_buffered_records"); ok {
			sampleMu.Lock()
			samples, maxBuffered = samples+1, max(maxBuffered, v)
			sampleMu.Unlock()
		}
	}
	startDispatcher(t, env)

	reader := newOutcomeReader(t, cluster.Brokers())
	reader.waitUntil(t, "every outcome", func(got []wire.Outcome) bool { return countFinals(got) >= len(reqs) })

	sampleMu.Lock()
	n, m := samples, maxBuffered
	sampleMu.Unlock()
	if n == 0 || m == 0 {
		t.Fatalf("the buffer was sampled %d times, never above 0; the test proves nothing", n)
	}
	t.Logf("buffer sampled at %d processor calls: at most %v records", n, m)
	if m > 40 {
		t.Errorf("up to %v records buffered, want at most DISPATCHER_MAX_BUFFERED = 40", m)
	}
	fake.mu.Lock()
	maxActive := fake.maxActive
	fake.mu.Unlock()
	if maxActive > 3 {
		t.Errorf("%d concurrent processor calls, want at most 3", maxActive)
	}
	checkUserOrder(t, fake, reader, reqs)
}
