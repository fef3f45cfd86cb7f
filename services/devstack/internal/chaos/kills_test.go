package chaos

import (
	"math/rand/v2"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestNewPlan(t *testing.T) {
	t.Parallel()
	perService := DefaultConfig()
	perService.Kill = []string{"gateway", "status-consumer"}
	perService.KillsPerService, perService.QuickKills, perService.RestartKills = 5, 2, 1
	issue10 := RebalanceKillsConfig()
	tests := []struct {
		name string
		cfg  Config
		want map[string]map[string]int
	}{
		{
			name: "per service: quick kills for consumers only",
			cfg:  perService,
			want: map[string]map[string]int{
				"gateway":         {KindWorking: 5, KindRestart: 1},
				"status-consumer": {KindWorking: 5, KindQuick: 4, KindRestart: 1},
			},
		},
		{
			name: "issue 10: 14 paced kills over four services",
			cfg:  issue10,
			want: map[string]map[string]int{
				"gateway": {KindPaced: 3}, "outbox-relay": {KindPaced: 3},
				"dispatcher": {KindPaced: 3}, "status-consumer": {KindPaced: 3},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for seed := range uint64(20) {
				p := newPlan(tt.cfg, rand.New(rand.NewPCG(seed, 1)))
				got := p.Want()
				if tt.cfg.Schedule == Sequence {
					// 14 = 4 × 3 + 2: two services drawn for a fourth kill.
					extra := 0
					for s, kinds := range got {
						if kinds[KindPaced] == 4 {
							extra++
							got[s][KindPaced] = 3
						}
					}
					if extra != 2 {
						t.Errorf("seed %d: %d services killed 4 times, want 2: %v", seed, extra, p.Want())
					}
					for i, s := range p.Sequence {
						if s.After < tt.cfg.GapMin || s.After > tt.cfg.GapMax {
							t.Errorf("seed %d: kill %d after %v, want %v to %v", seed, i, s.After, tt.cfg.GapMin, tt.cfg.GapMax)
						}
					}
				} else {
					for s, steps := range p.PerService {
						if len(steps[0].Follow) != 0 {
							t.Errorf("seed %d: %s's first kill has a follow-up", seed, s)
						}
					}
				}
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Fatalf("seed %d: planned kills (-want +got):\n%s", seed, diff)
				}
				if len(p.Lines()) == 0 {
					t.Errorf("seed %d: the plan describes itself in no line", seed)
				}
			}
		})
	}
}

func TestKillsShort(t *testing.T) {
	t.Parallel()
	plan := map[string]map[string]int{"dispatcher": {KindWorking: 10, KindQuick: 3}, "gateway": {KindPaced: 4}}
	done := map[string]map[string]int{"dispatcher": {KindWorking: 12, KindQuick: 2}, "gateway": {KindPaced: 4}}
	want := []string{"dispatcher quick 2/3"}
	if diff := cmp.Diff(want, killsShort(plan, done)); diff != "" {
		t.Errorf("killsShort (-want +got):\n%s", diff)
	}
}

func TestRebalancing(t *testing.T) {
	t.Parallel()
	for state, want := range map[string]bool{
		"PreparingRebalance": true, "CompletingRebalance": true, "Stable": false, "Empty": false, "unreadable": false, "": false,
	} {
		if got := rebalancing(state); got != want {
			t.Errorf("rebalancing(%q) = %t, want %t", state, got, want)
		}
	}
}
