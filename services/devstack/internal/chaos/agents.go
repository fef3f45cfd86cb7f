package chaos

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"syscall"
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

func sleep(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// groups are the consumer groups of the services that consume Kafka. A
// restarted consumer works only once its group is stable again, which after
// a SIGKILL takes up to the session timeout of the dead member (45 s, the
// franz-go default the services use).
var groups = map[string]string{"dispatcher": "dispatcher", "status-consumer": "status-consumer"}

// ready reports whether service is up and, for a consumer, whether its group
// is stable with a member: the process is doing its work.
func (a *agents) ready(ctx context.Context, service string) bool {
	if !healthy(ctx, a.http, a.st.HealthURLs()[service]) {
		return false
	}
	g, ok := groups[service]
	if !ok || a.admin == nil {
		return true
	}
	dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	described, err := a.admin.DescribeGroups(dctx, g)
	if err != nil {
		return false
	}
	d, ok := described[g]
	return ok && d.Err == nil && d.State == "Stable" && len(d.Members) > 0
}

// killer SIGKILLs service at random instants until ctx ends. Each kill
// waits until the service is back and working (ready), then a random time
// drawn so the remaining kills fit into the traffic that is left, so every
// kill hits a working process in the middle of its work.
func (a *agents) killer(ctx context.Context, service string) {
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(len(service))))
	kills := 0
	for {
		if kills >= a.cfg.KillsPerService && a.remaining() <= 0 {
			return // enough, and the last payments are out
		}
		for !a.ready(ctx, service) || (service == "processor-sim" && a.outageActive()) {
			if !sleep(ctx, 250*time.Millisecond) {
				return
			}
		}
		left := max(a.cfg.KillsPerService-kills, 1)
		// Each later kill costs a restart (the supervisor's delay grows to
		// 10 s), and a consumer's also a group rebalance: leave room for
		// them, and finish with some traffic to spare.
		cost := 12 * time.Second
		if _, ok := groups[service]; ok {
			cost = 50 * time.Second
		}
		budget := a.remaining()*85/100 - time.Duration(left-1)*cost
		mean := max(budget/time.Duration(2*left+1)*2, time.Second)
		gap := time.Duration(float64(mean) * (0.3 + 1.4*rng.Float64()))
		if !sleep(ctx, max(gap, 500*time.Millisecond)) {
			return
		}
		if service == "processor-sim" && a.outageActive() {
			continue
		}
		pid := a.st.Pid(service)
		if pid == 0 {
			continue
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			a.logf("kill %s (pid %d): %v", service, pid, err)
			continue
		}
		kills++
		a.mu.Lock()
		a.rep.Kills[service]++
		a.mu.Unlock()
		if !a.cfg.Quiet {
			a.logf("SIGKILL %s (pid %d), kill %d", service, pid, kills)
		}
	}
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
		if !sleep(ctx, gap) {
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
		if !sleep(ctx, 200*time.Millisecond) {
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
		if !sleep(ctx, 500*time.Millisecond) {
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

// progress prints a line every 10 s.
func (a *agents) progress(ctx context.Context, pool *pgxpool.Pool) {
	if a.cfg.Quiet {
		return
	}
	for sleep(ctx, 10*time.Second) {
		var inflight, unknown, final int64
		_ = pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE status IN ('accepted','processing')),
			count(*) FILTER (WHERE status = 'unknown'), count(*) FILTER (WHERE status IN ('succeeded','failed'))
			FROM payments WHERE source = 'api'`).Scan(&inflight, &unknown, &final)
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
