package loadgen_test

import (
	"context"
	"errors"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/finsvc/finance/loadtest/internal/check"
	"github.com/finsvc/finance/loadtest/internal/fakes"
	"github.com/finsvc/finance/loadtest/internal/loadgen"
	"github.com/finsvc/finance/loadtest/internal/scenario"
	"github.com/finsvc/finance/loadtest/internal/target"
	"github.com/finsvc/finance/pkg/auth"
	"github.com/finsvc/finance/pkg/simclient"
)

const firstUser = 5000

func tokens(t *testing.T, n int) []string {
	t.Helper()
	out := make([]string, n)
	for i := range out {
		tok, err := auth.Mint([]byte(auth.DevSecret), firstUser+int64(i), false, time.Hour, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		out[i] = tok
	}
	return out
}

type capture struct {
	mu     sync.Mutex
	writes []check.Write
	execs  []simclient.Execution
}

func (c *capture) check(_ context.Context, w []check.Write, e []simclient.Execution) (check.Report, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes, c.execs = w, e
	return check.Report{Requests: int64(len(w))}, nil
}

func TestRunSendsTheWorkloadAsTheUsers(t *testing.T) {
	t.Parallel()
	sim := fakes.NewSim(t)
	sim.Execute(1, -1, "") // before the run: not the run's
	tgt := fakes.NewTarget(t, sim)
	w := scenario.Workload{Scenario: "mixed", Users: 20, Rate: 200, Duration: time.Second, ReadRatio: 0.5, Limit: 300,
		Outage: &scenario.Outage{At: 300 * time.Millisecond, Duration: time.Second}}
	var c capture
	var statuses atomic.Int64
	res, err := loadgen.Run(context.Background(), loadgen.Options{
		RunID: "ltest", Workload: w, Target: target.New(target.Legacy, tgt.URL, 50, 10*time.Second),
		Sim: simclient.New(sim.URL), FirstUser: firstUser, Tokens: tokens(t, w.Users), ExecBaseline: 1,
		Check: c.check, Workers: 50, Progress: func(loadgen.Status) { statuses.Add(1) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Writes.Sent != 100 || res.Reads.Sent != 100 || res.Writes.ByClass["ok"] != 100 || res.Reads.ByClass["ok"] != 100 {
		t.Errorf("writes %+v reads %+v, want 100 sent and answered 2xx each", res.Writes, res.Reads)
	}
	if res.Writes.Latency.Count != 100 || res.Writes.Latency.Max <= 0 {
		t.Errorf("write latency %+v, want 100 recorded", res.Writes.Latency)
	}
	if got := len(tgt.Payments()); got != 100 || tgt.Feeds() != 100 {
		t.Errorf("target got %d payments and %d feeds, want 100 and 100", got, tgt.Feeds())
	}
	v := auth.NewVerifier([]byte(auth.DevSecret))
	seen := map[[2]int64]bool{}
	for _, p := range tgt.Payments() {
		pr, err := v.FromHeader(p.Auth)
		if err != nil || pr.UserID != p.UserID || pr.Admin {
			t.Errorf("payment of user %d sent with token %v %v, want the user's own", p.UserID, pr, err)
		}
		if p.UserID < firstUser || p.UserID >= firstUser+20 || p.Amount >= 0 || p.MerchantID == 0 {
			t.Errorf("payment %+v out of the workload", p)
		}
		k := [2]int64{p.UserID, p.Amount}
		if seen[k] {
			t.Errorf("user %d paid %d twice in one run: (user, amount) must name one request", p.UserID, p.Amount)
		}
		seen[k] = true
	}
	c.mu.Lock()
	if len(c.writes) != 100 || len(c.execs) != 100 {
		t.Errorf("checker got %d writes and %d executions, want 100 and 100 (the run's only)", len(c.writes), len(c.execs))
	}
	for _, wr := range c.writes {
		if wr.Class != target.OK || wr.Code != 201 || wr.Key == "" {
			t.Errorf("write %+v, want answered 201 with a key", wr)
			break
		}
	}
	c.mu.Unlock()
	if got := sim.Outages(); len(got) != 1 || got[0] != time.Second {
		t.Errorf("outages asked %v, want one of 1s", got)
	}
	if res.Outage == nil || res.Outage.Err != "" || math.Abs(res.Outage.End-res.Outage.Start-1) > 1e-6 {
		t.Errorf("outage window %+v", res.Outage)
	}
	if res.Drain.Applicable {
		t.Errorf("the as-is service has no backlog to drain: %+v", res.Drain)
	}
	if len(res.Seconds) == 0 || res.BucketSeconds != 0.1 {
		t.Errorf("%d buckets of %v s, want 0.1 s buckets for a short run", len(res.Seconds), res.BucketSeconds)
	}
	if res.Check.Requests != 100 {
		t.Errorf("check report %+v not kept", res.Check)
	}
}

// backlog drains by 5 per call.
type backlog struct{ left atomic.Int64 }

func (b *backlog) Backlog(context.Context) (check.Backlog, error) {
	n := b.left.Load()
	if n > 0 {
		b.left.Add(-5)
	}
	return check.Backlog{Accepted: max(n, 0)}, nil
}

func TestRunWaitsForThePipelineToDrain(t *testing.T) {
	t.Parallel()
	sim := fakes.NewSim(t)
	tgt := fakes.NewTarget(t, sim)
	w := scenario.Workload{Scenario: "burst", Users: 10, Rate: 100, Duration: 100 * time.Millisecond, Burst: true, Limit: 300}
	b := &backlog{}
	b.left.Store(20)
	var c capture
	// AfterDrain (where loadtest reads the CPU a second time) comes after
	// the drain and before the checker.
	afterDrain := -1
	res, err := loadgen.Run(context.Background(), loadgen.Options{
		RunID: "ltest", Workload: w, Target: target.New(target.Pipeline, tgt.URL, 10, 10*time.Second),
		Sim: simclient.New(sim.URL), FirstUser: firstUser, Tokens: tokens(t, w.Users), Backlog: b, Check: c.check,
		AfterDrain: func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			if c.writes != nil {
				t.Error("AfterDrain ran after the checker")
			}
			afterDrain = int(b.left.Load())
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if afterDrain != 0 {
		t.Errorf("AfterDrain saw %d left in the backlog (-1: not called), want 0: after the drain", afterDrain)
	}
	if !res.Drain.Applicable || !res.Drain.Drained || res.Drain.TimedOut {
		t.Errorf("drain %+v, want applicable and drained", res.Drain)
	}
	if b.left.Load() > 0 {
		t.Errorf("the run ended with %d still in the backlog", b.left.Load())
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, wr := range c.writes {
		if wr.PaymentID == 0 || wr.Code != 202 {
			t.Errorf("pipeline write %+v, want 202 with the payment id", wr)
		}
	}
}

func TestRunStopsWhenCancelled(t *testing.T) {
	t.Parallel()
	sim := fakes.NewSim(t)
	tgt := fakes.NewTarget(t, sim)
	w := scenario.Workload{Scenario: "mixed", Users: 5, Rate: 10, Duration: time.Hour, Limit: 300}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	done := make(chan error, 1)
	go func() {
		_, err := loadgen.Run(ctx, loadgen.Options{
			RunID: "ltest", Workload: w, Target: target.New(target.Legacy, tgt.URL, 10, 10*time.Second),
			Sim: simclient.New(sim.URL), FirstUser: firstUser, Tokens: tokens(t, w.Users),
			Check: (&capture{}).check,
		})
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Run after cancel = %v, want context.Canceled", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not stop after its context was cancelled")
	}
}
