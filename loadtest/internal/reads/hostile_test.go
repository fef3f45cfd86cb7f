package reads_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/finsvc/finance/loadtest/internal/reads"
)

func TestPhaseOf(t *testing.T) {
	t.Parallel()
	const phase = 15 * time.Second
	for _, tc := range []struct {
		offset time.Duration
		want   int
	}{
		{-time.Millisecond, -1}, // the warm-up
		{0, 0},
		{phase - time.Nanosecond, 0},
		{phase, 1},
		{3*phase + time.Second, 3},
		{4*phase - time.Nanosecond, 3},
		{4 * phase, -1}, // after the last
	} {
		if got := reads.PhaseOf(tc.offset, phase, 4); got != tc.want {
			t.Errorf("PhaseOf(%s) = %d, want %d", tc.offset, got, tc.want)
		}
	}
	for p, want := range []bool{false, true, false, true} {
		if got := reads.IsHostilePhase(p); got != want {
			t.Errorf("IsHostilePhase(%d) = %v, want %v", p, got, want)
		}
	}
}

func TestHostileJudge(t *testing.T) {
	t.Parallel()
	lat := func(p99 float64) reads.Latency { return reads.Latency{Count: 1000, P50: 1, P99: p99} }
	calm := []reads.PhaseResult{{Index: 0, Steal: 0.002}, {Index: 1, Hostile: true, Steal: 0.01}}
	for _, tc := range []struct {
		name        string
		quiet, host reads.Latency
		errs        map[string]int64
		offered     float64
		lag         float64
		phases      []reads.PhaseResult
		want        []bool // p99, errors, rate, steal
	}{
		{"within 20%", lat(10), lat(12), nil, 3000, 1, calm, []bool{true, true, true, true}},
		{"above 20%", lat(10), lat(12.1), nil, 3000, 1, calm, []bool{false, true, true, true}},
		{"faster when hostile", lat(10), lat(8), nil, 2700, 100, calm, []bool{true, true, true, true}},
		{"a victim refused", lat(10), lat(10), map[string]int64{"429": 1}, 3000, 1, calm, []bool{true, false, true, true}},
		{"hostile offered too little", lat(10), lat(10), nil, 2699, 1, calm, []bool{true, true, false, true}},
		{"hostile's schedule late", lat(10), lat(10), nil, 3000, 100.1, calm, []bool{true, true, false, true}},
		{"no quiet sample", reads.Latency{}, lat(10), nil, 3000, 1, calm, []bool{false, true, true, true}},
		{"a quiet phase stolen from", lat(20), lat(12), nil, 3000, 1,
			[]reads.PhaseResult{{Index: 0, Steal: 0.0101}, {Index: 1, Hostile: true}}, []bool{true, true, true, false}},
		{"steal unknown (not Linux)", lat(10), lat(10), nil, 3000, 1,
			[]reads.PhaseResult{{Index: 0, StealErr: "no /proc/stat"}, {Index: 1, Hostile: true, StealErr: "no /proc/stat"}}, []bool{true, true, true, true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := &reads.HostileReport{Settings: reads.HostileSettings{HostileRate: 3000},
				Result: &reads.HostileResult{Quiet: tc.quiet, Hostile: tc.host, VictimErrors: tc.errs,
					HostileOffered: tc.offered, HostileLagP99: tc.lag, Phases: tc.phases}}
			r.Judge()
			if len(r.Goals) != len(tc.want) {
				t.Fatalf("%d goals, want %d: %+v", len(r.Goals), len(tc.want), r.Goals)
			}
			for i, g := range r.Goals {
				if g.Met != tc.want[i] {
					t.Errorf("goal %q met = %v, want %v (got %s)", g.Name, g.Met, tc.want[i], g.Got)
				}
			}
			if !strings.Contains(r.Summary(), "| goal |") {
				t.Errorf("summary without the goals:\n%s", r.Summary())
			}
		})
	}
}

func TestHostileValidate(t *testing.T) {
	t.Parallel()
	c := reads.HostileDefaults()
	c.Merchants = []int64{1}
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	c.Phases, c.Accounts, c.Source = 3, 1, "not-an-ip"
	err := c.Validate()
	for _, want := range []string{"--phases 3", "--hostile-accounts 1", "--hostile-source"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to name %s", err, want)
		}
	}
}

// TestRunHostile runs two short phases against a fake gateway: the
// victims' requests all arrive from the first phase on, the hostile's
// only in the second, from its own source address, of every kind.
func TestRunHostile(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	peers := map[string]map[string]int{} // source address → "victim" or hostile paths → count
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.RemoteAddr[:strings.LastIndex(r.RemoteAddr, ":")]
		mu.Lock()
		if peers[host] == nil {
			peers[host] = map[string]int{}
		}
		peers[host][r.Method+" "+strings.SplitN(r.URL.Path, "/", 4)[2]]++
		mu.Unlock()
		if host == "127.0.0.2" {
			http.Error(w, "no", http.StatusTooManyRequests)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(srv.Close)
	cfg := reads.HostileDefaults()
	cfg.URL, cfg.FirstUser, cfg.Users, cfg.Rate, cfg.Accounts = srv.URL, 100, 20, 200, 4
	cfg.HostileRate, cfg.HostileConns, cfg.Phases, cfg.Phase, cfg.Warmup = 400, 16, 2, time.Second, 200*time.Millisecond
	cfg.Merchants, cfg.Secret, cfg.RunID = []int64{7}, []byte("secret"), "t"
	var cpuReads int
	cfg.CPU = func(context.Context) (float64, error) { cpuReads++; return float64(cpuReads), nil }
	res, err := reads.RunHostile(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Phases) != 2 || res.Phases[0].Hostile || !res.Phases[1].Hostile {
		t.Fatalf("phases %+v", res.Phases)
	}
	if res.Phases[0].HostileSent != 0 || res.Phases[1].HostileSent == 0 {
		t.Errorf("hostile sent %d in the quiet phase, %d in the hostile one", res.Phases[0].HostileSent, res.Phases[1].HostileSent)
	}
	for _, p := range res.Phases {
		if p.Victims.Count < 150 || p.Victims.Count > 250 {
			t.Errorf("phase %d: %d victim requests, want about 200", p.Index, p.Victims.Count)
		}
		if p.TargetCPU != 1 || p.CPUErr != "" {
			t.Errorf("phase %d: target CPU %v (%s), want 1 (one more per boundary)", p.Index, p.TargetCPU, p.CPUErr)
		}
		if p.StealErr != "" || p.Steal < 0 || p.Steal > 1 {
			t.Errorf("phase %d: steal %v (%s), want the share of the machine's CPU time stolen", p.Index, p.Steal, p.StealErr)
		}
	}
	if res.VictimErrors != nil || res.Quiet.Count == 0 || res.Hostile.Count == 0 {
		t.Errorf("victims: errors %v, quiet %+v, hostile %+v", res.VictimErrors, res.Quiet, res.Hostile)
	}
	var answered int64
	for _, k := range reads.HostileKinds {
		if n := res.HostileAnswers[k]["429"]; n == 0 {
			t.Errorf("no %s request answered: %v", k, res.HostileAnswers)
		} else {
			answered += n
		}
	}
	if answered != res.HostileSent {
		t.Errorf("%d hostile answers counted, %d sent", answered, res.HostileSent)
	}
	mu.Lock()
	defer mu.Unlock()
	if peers["127.0.0.1"]["POST payments"] == 0 || peers["127.0.0.1"]["GET users"] == 0 {
		t.Errorf("victims (127.0.0.1) sent %v, want payments and reads", peers["127.0.0.1"])
	}
	if peers["127.0.0.2"]["POST payments"] == 0 || peers["127.0.0.2"]["GET payments"] == 0 {
		t.Errorf("the hostile (127.0.0.2) sent %v", peers["127.0.0.2"])
	}
}
