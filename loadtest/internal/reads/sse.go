package reads

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/finsvc/finance/loadtest/internal/target"
	"github.com/finsvc/finance/pkg/simclient"
)

// SSEConfig is sse-latency's payment side: credits at Rate a second for
// the run's Duration, round robin over the streams' users.
type SSEConfig struct {
	Rate float64
	// RunID prefixes the credits' Idempotency-Keys.
	RunID string
	// Pay sends one credit (target.Client.Pay in the CLI).
	Pay func(ctx context.Context, tok string, p target.Payment) target.Response
	// Executions returns the processor's executions since the run began.
	Executions func(ctx context.Context) ([]simclient.Execution, error)
	// Grace is how long to wait after the load for the last events.
	Grace time.Duration
}

// SSEResult is sse-latency's measurement: per executed credit, the arrival
// of its payment.succeeded event on the user's stream minus the time the
// processor's answer left (the simulator's record, key payment-<uid>:
// answered_at, or executed_at from a simulator that does not say).
type SSEResult struct {
	Sent      int     `json:"credits_sent"`
	Accepted  int     `json:"credits_accepted"`
	Executed  int     `json:"executed"`
	Seen      int     `json:"succeeded_events_seen"`
	Matched   int     `json:"matched"`
	Missing   int     `json:"executed_without_event"`
	AnswerSSE Latency `json:"answer_to_sse_event"`
}

// RunSSE opens cfg.Streams streams for the users FirstUser.. and credits
// them, then matches each payment.succeeded event with its execution.
func RunSSE(ctx context.Context, cfg Config, sc SSEConfig) (*Result, *SSEResult, error) {
	if err := cfg.Validate(); err != nil {
		return nil, nil, err
	}
	if !(sc.Rate > 0) {
		return nil, nil, fmt.Errorf("--rate %v: want more than 0", sc.Rate)
	}
	c := newClient(cfg, 64)
	defer c.close()
	var mu sync.Mutex
	arrived := map[string]time.Time{} // payment uid → first payment.succeeded event
	onEvent := func(ev SSEEvent) {
		if ev.Type != "payment.succeeded" {
			return
		}
		var v struct {
			UID string `json:"uid"`
		}
		if json.Unmarshal([]byte(ev.Data), &v) != nil || v.UID == "" {
			return
		}
		mu.Lock()
		if _, ok := arrived[v.UID]; !ok {
			arrived[v.UID] = ev.Arrived
		}
		mu.Unlock()
	}
	pctx, stop := context.WithCancel(ctx)
	defer stop()
	ps := &pushState{}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i := range cfg.Streams {
		user := cfg.FirstUser + int64(i%cfg.Population)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for pctx.Err() == nil {
				sem <- struct{}{}
				ps.stream(pctx, c, user, func() { <-sem }, onEvent)
			}
		}()
	}
	// Wait (bounded) for the streams to open before the first credit.
	for deadline := time.Now().Add(30 * time.Second); ps.streamsOpen.Load() < int64(cfg.Streams) && time.Now().Before(deadline); {
		sleep(ctx, 50*time.Millisecond)
	}
	start := time.Now()
	n := int(math.Round(sc.Rate * cfg.Duration.Seconds()))
	accepted := map[string]bool{}
	var amu sync.Mutex
	var pwg sync.WaitGroup
	for i := range n {
		due := start.Add(time.Duration(float64(i) / sc.Rate * float64(time.Second)))
		sleep(ctx, time.Until(due))
		if ctx.Err() != nil {
			break
		}
		user := cfg.FirstUser + int64(i%min(cfg.Streams, cfg.Population))
		tok, err := c.token(user)
		if err != nil {
			return nil, nil, err
		}
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			r := sc.Pay(ctx, tok, target.Payment{UserID: user, MerchantID: 4593, Amount: 100 + int64(i),
				Key: fmt.Sprintf("%s-%d", sc.RunID, i)})
			if r.Class == target.OK && r.PaymentUID != "" {
				amu.Lock()
				accepted[r.PaymentUID] = true
				amu.Unlock()
			}
		}()
	}
	pwg.Wait()
	// Wait for every accepted credit's event, at most Grace.
	for deadline := time.Now().Add(sc.Grace); time.Now().Before(deadline) && ctx.Err() == nil; {
		mu.Lock()
		seen := 0
		for uid := range accepted {
			if _, ok := arrived[uid]; ok {
				seen++
			}
		}
		mu.Unlock()
		if seen == len(accepted) {
			break
		}
		sleep(ctx, 200*time.Millisecond)
	}
	res := &Result{StartedAt: start, Elapsed: time.Since(start), StreamsOpenAtEnd: ps.streamsOpen.Load(),
		PushErrors: ps.errors.Load(), SSEEvents: ps.events.Load()}
	if e, ok := ps.firstErr.Load().(string); ok {
		res.PushFirstError = e
	}
	stop()
	wg.Wait()
	execs, err := sc.Executions(context.WithoutCancel(ctx))
	if err != nil {
		return res, nil, fmt.Errorf("the simulator's executions: %w", err)
	}
	mu.Lock()
	defer mu.Unlock()
	return res, matchSSE(n, accepted, arrived, execs), nil
}

// matchSSE pairs each accepted credit's execution (the first, by key
// payment-<uid>) with its event's arrival.
func matchSSE(sent int, accepted map[string]bool, arrived map[string]time.Time, execs []simclient.Execution) *SSEResult {
	r := &SSEResult{Sent: sent, Accepted: len(accepted), Seen: len(arrived)}
	h := hdrhistogram.New(histMin, histMax, 3)
	first := map[string]time.Time{}
	for _, e := range execs {
		uid, ok := e.PaymentUID()
		if !ok || !accepted[uid.String()] {
			continue
		}
		if t, seen := first[uid.String()]; !seen || e.Answer().Before(t) {
			first[uid.String()] = e.Answer()
		}
	}
	r.Executed = len(first)
	for uid, at := range first {
		got, ok := arrived[uid]
		if !ok {
			r.Missing++
			continue
		}
		r.Matched++
		_ = h.RecordValue(min(max(got.Sub(at).Microseconds(), histMin), histMax))
	}
	r.AnswerSSE = latencyOf(h)
	return r
}
