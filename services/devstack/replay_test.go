package main_test

// The replay test of issue 11: with every idempotency key expired at the
// processor (as 24 hours would), every payments.requested record published
// again (as an offset rewind would) and the dead letters replayed, no
// payment executes a second time and no balance moves: the database guards
// what the key no longer can.

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/finsvc/finance/pkg/kafka"
	"github.com/finsvc/finance/pkg/payment"
	"github.com/finsvc/finance/pkg/pgtest"
)

func TestRewindAndReplayAfterKeysExpiredNeverPayTwice(t *testing.T) {
	// Not parallel: each of these tests runs a whole stack, and several at
	// once would share two cores and PostgreSQL's connection limit.
	r := newRestoreRig(t)
	dbURL := pgtest.NewDB(t)
	// Three attempts, so that lost replies make unknown payments quickly;
	// the budget, not the circuit breaker, decides (a processor that drops
	// every reply otherwise looks down, and calls are held, not spent).
	r.start(dbURL, "PROCESSOR_MAX_ATTEMPTS=3", "PROCESSOR_BREAKER_FAILURES=1000000")

	// 80 payments settle normally, some declined; 20 more lose every reply:
	// executed at the processor, unknown here, their requests dead-lettered,
	// then resolved by the reconciler from the processor's statement.
	settled := r.pay(80)
	waitFinal(t, dbURL, settled)
	r.simConfig(`{"lost_response_rate":1}`)
	lost := r.pay(20)
	// Every request whose replies were lost is dead-lettered.
	waitMetric(t, r.cfg.DispatcherOps, `dispatcher_dead_letters_total{reason="retry_budget_spent"}`, float64(len(lost)))
	r.simConfig(`{"lost_response_rate":0}`)
	r.financectl(false, "reconcile", "--processor-url", r.st.SimURL)
	all := append(settled, lost...)
	final := waitFinal(t, dbURL, all)
	if n := count(final, payment.StatusFailed); n == 0 || n == len(settled) {
		t.Fatalf("%d of %d payments declined; want some", n, len(all))
	}

	execBefore, _ := executionsByUID(t, r.st.SimURL)
	balBefore := balances(t, dbURL)
	sentBefore := metric(t, r.cfg.DispatcherOps, `dispatcher_guard_total{result="send"}`)
	finalBefore := metric(t, r.cfg.DispatcherOps, `dispatcher_guard_total{result="final"}`)

	// The key no longer protects anything.
	resp, err := http.Post(r.st.SimURL+"/sim/expire-keys", "application/json", nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("expire keys: %v %v", resp, err)
	}
	resp.Body.Close()

	// A rewind: every payments.requested record again; and the DLQ replayed.
	republished := republishRequests(t, r.st.Brokers)
	if republished < len(all) {
		t.Fatalf("republished %d requests, want at least %d", republished, len(all))
	}
	r.financectl(false, "dlq", "replay", "--topic", kafka.DLQTopic(kafka.TopicRequested), "--rate", "1000")

	// The dispatcher has seen every record again and sent none of them.
	waitMetric(t, r.cfg.DispatcherOps, `dispatcher_guard_total{result="final"}`, finalBefore+float64(republished))
	if sent := metric(t, r.cfg.DispatcherOps, `dispatcher_guard_total{result="send"}`); sent != sentBefore {
		t.Errorf("the dispatcher sent %v payments after the rewind, want none", sent-sentBefore)
	}
	execAfter, other := executionsByUID(t, r.st.SimURL)
	if other != 0 {
		t.Errorf("%d executions under keys that are no payment uid key", other)
	}
	for _, p := range all {
		if len(execAfter[p.UID]) != len(execBefore[p.UID]) {
			t.Errorf("payment %s (%s): %d executions before, %d after", p.UID, final[p.UID], len(execBefore[p.UID]), len(execAfter[p.UID]))
		}
	}
	if after := balances(t, dbURL); !equalBalances(balBefore, after) {
		t.Errorf("balances moved: before %v, after %v", balBefore, after)
	}
	r.verifyClean()
}

// metricLines returns the lines of a service's /metrics that start with one
// of prefixes, for failure messages.
func metricLines(opsAddr string, prefixes ...string) string {
	resp, err := http.Get("http://" + opsAddr + "/metrics")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		for _, p := range prefixes {
			if strings.HasPrefix(line, p) {
				out = append(out, line)
			}
		}
	}
	return strings.Join(out, "\n")
}

// simConfig changes the simulator's settings (PUT /sim/config).
func (r *restoreRig) simConfig(body string) {
	r.t.Helper()
	req, _ := http.NewRequest(http.MethodPut, r.st.SimURL+"/sim/config", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		r.t.Fatalf("PUT /sim/config %s: %v %v", body, resp, err)
	}
	resp.Body.Close()
}

func count(m map[string]payment.Status, s payment.Status) int {
	n := 0
	for _, v := range m {
		if v == s {
			n++
		}
	}
	return n
}

// republishRequests reads payments.requested from its start to its end and
// produces every record again, key and value as they were, and returns how
// many.
func republishRequests(t *testing.T, brokers string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(brokers, ",")...),
		kgo.ConsumeTopics(kafka.TopicRequested), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var recs []*kgo.Record
	for {
		fs := cl.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatalf("read %s: %v", kafka.TopicRequested, err)
		}
		fs.EachRecord(func(rec *kgo.Record) {
			recs = append(recs, &kgo.Record{Topic: kafka.TopicRequested, Key: rec.Key, Value: rec.Value})
		})
		if caughtUp(ctx, t, cl, len(recs)) {
			break
		}
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("republish: %v", err)
	}
	return len(recs)
}

// caughtUp reports whether n records are every record of payments.requested
// (the sum of its partitions' end offsets, none deleted).
func caughtUp(ctx context.Context, t *testing.T, cl *kgo.Client, n int) bool {
	t.Helper()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, kafka.TopicRequested)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		t.Fatalf("end offsets: %v", err)
	}
	var total int64
	ends.Each(func(o kadm.ListedOffset) { total += o.Offset })
	return int64(n) >= total
}

// balances returns every wallet's balance and held amount.
func balances(t *testing.T, dbURL string) map[int64][2]int64 {
	t.Helper()
	out := map[int64][2]int64{}
	var user, bal, held int64
	eachRow(t, dbURL, []any{&user, &bal, &held}, func() { out[user] = [2]int64{bal, held} },
		`SELECT user_id, balance, held FROM wallets`)
	return out
}

func equalBalances(a, b map[int64][2]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
