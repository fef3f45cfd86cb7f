package chaos

import (
	"bytes"
	"context"
	"fmt"
	"github.com/finsvc/finance/pkg/clock"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/finsvc/finance/services/devstack/internal/stack"
)

// agents are the goroutines that break things while the traffic runs.
type agents struct {
	cfg     Config
	st      *stack.Stack
	tr      *traffic
	rep     *Report
	logf    func(string, ...any)
	http    *http.Client
	control string // devkafka's control API, "" when off
	admin   *kadm.Client
	watch   *procWatch
	stall   stallMeter // fed by progress, then by settle

	mu          sync.Mutex
	outageUntil time.Time
}

func (a *agents) outageActive() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	// A margin: a simulator killed just after its outage began would
	// forget it, and the outage would be shorter than asked.
	return time.Now().Before(a.outageUntil.Add(2 * time.Second))
}

// remaining estimates how long the traffic still runs.
func (a *agents) remaining() time.Duration {
	left := a.cfg.Payments - int(a.tr.sent.Load())
	return time.Duration(float64(left) / a.cfg.Rate * float64(time.Second))
}

// slept waits d and reports whether it did, false once ctx has ended:
// the agents' loops read "while slept".
func slept(ctx context.Context, d time.Duration) bool {
	return clock.Sleep(ctx, d) == nil
}

// faultChoices are the broker faults the injector draws from.
var faultChoices = []struct{ kind, err string }{
	{"produce", "NOT_LEADER_FOR_PARTITION"},
	{"produce", "REQUEST_TIMED_OUT"},
	{"fetch", "NOT_LEADER_FOR_PARTITION"},
	{"fetch", "REQUEST_TIMED_OUT"},
	{"commit", "COORDINATOR_LOAD_IN_PROGRESS"},
	{"commit", "NOT_COORDINATOR"},
	{"txn", "CONCURRENT_TRANSACTIONS"},
}

// faults injects a broker fault (or, with several brokers, a leader move)
// every cfg.FaultEvery on average until ctx ends.
func (a *agents) faults(ctx context.Context) {
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	for {
		gap := time.Duration(float64(a.cfg.FaultEvery) * (0.5 + rng.Float64()))
		if !slept(ctx, gap) {
			return
		}
		var name string
		var err error
		if a.cfg.Brokers > 1 && rng.IntN(4) == 0 {
			coord := rng.IntN(3) == 0
			name = "leader-move"
			if coord {
				name = "leader-move+coordinators"
			}
			err = a.postJSON(ctx, a.control+"/leader-moves", fmt.Sprintf(`{"coordinators":%t}`, coord), http.StatusOK)
		} else {
			f := faultChoices[rng.IntN(len(faultChoices))]
			count := 1 + rng.IntN(10)
			name = f.kind + "/" + f.err
			err = a.postJSON(ctx, a.control+"/faults", fmt.Sprintf(`{"kind":%q,"error":%q,"count":%d}`, f.kind, f.err, count), http.StatusCreated)
		}
		if err != nil {
			if ctx.Err() == nil {
				a.logf("inject %s: %v", name, err)
			}
			continue
		}
		a.mu.Lock()
		a.rep.Faults[name]++
		a.mu.Unlock()
	}
}

// outage puts the simulator into an outage once cfg.OutageAt of the
// payments were sent.
func (a *agents) outage(ctx context.Context) {
	for float64(a.tr.sent.Load()) < a.cfg.OutageAt*float64(a.cfg.Payments) {
		if !slept(ctx, 200*time.Millisecond) {
			return
		}
	}
	body := fmt.Sprintf(`{"duration":%q}`, a.cfg.Outage.String())
	for {
		// Mark it first, so the killer leaves the simulator alone.
		a.mu.Lock()
		a.outageUntil = time.Now().Add(a.cfg.Outage)
		a.mu.Unlock()
		err := a.postJSON(ctx, a.st.SimURL+"/sim/outage", body, http.StatusOK)
		if err == nil {
			a.mu.Lock()
			a.outageUntil = time.Now().Add(a.cfg.Outage)
			a.rep.Outages = append(a.rep.Outages, outage{At: time.Now(), Seconds: a.cfg.Outage.Seconds()})
			a.mu.Unlock()
			a.logf("processor outage for %v", a.cfg.Outage)
			return
		}
		if !slept(ctx, 500*time.Millisecond) {
			return
		}
	}
}

// calm removes the broker faults and ends a processor outage that is still on.
func (a *agents) calm(ctx context.Context) {
	if a.control != "" {
		req, _ := http.NewRequestWithContext(ctx, http.MethodDelete, a.control+"/faults", nil)
		if resp, err := a.http.Do(req); err == nil {
			resp.Body.Close()
		}
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodDelete, a.st.SimURL+"/sim/outage", nil)
	if resp, err := a.http.Do(req); err == nil {
		resp.Body.Close()
	}
}

// progress feeds the stall meter every second and prints a line every 10 s.
func (a *agents) progress(ctx context.Context, pool *pgxpool.Pool) {
	lastLog := time.Now()
	for slept(ctx, time.Second) {
		inflight, unknown, final, err := counts(ctx, pool)
		if err != nil {
			continue
		}
		now := time.Now()
		a.stall.observe(now, final, inflight+unknown)
		if a.cfg.Quiet || now.Sub(lastLog) < 10*time.Second {
			continue
		}
		lastLog = now
		a.mu.Lock()
		kills := 0
		for _, n := range a.rep.Kills {
			kills += n
		}
		faults := 0
		for _, n := range a.rep.Faults {
			faults += n
		}
		a.mu.Unlock()
		a.logf("sent %d/%d (attempts %d), in flight %d, unknown %d, final %d; kills %d, broker faults %d",
			a.tr.sent.Load(), a.cfg.Payments, a.tr.attempts.Load(), inflight, unknown, final, kills, faults)
	}
}

func (a *agents) postJSON(ctx context.Context, url, body string, want int) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader([]byte(body)))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.http.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != want {
		return fmt.Errorf("POST %s: %d", url, resp.StatusCode)
	}
	return nil
}
