package scenario_test

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/finsvc/finance/loadtest/internal/scenario"
)

func TestResolve(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		scenario string
		o        scenario.Overrides
		want     scenario.Workload
	}{
		{
			name: "burst defaults", scenario: "burst",
			want: scenario.Workload{Scenario: "burst", Users: 10_000, Rate: 10_000, Think: time.Second,
				Duration: time.Second, Burst: true, Limit: 300},
		},
		{
			name: "burst-poll defaults: 6,000 credits over 2,000 users, 16 pollers", scenario: "burst-poll",
			want: scenario.Workload{Scenario: "burst-poll", Users: 2_000, Rate: 6_000, Think: time.Second / 3,
				Duration: time.Second, Burst: true, Limit: 300, Pollers: 16, Credits: true},
		},
		{
			name: "burst-poll with fewer pollers", scenario: "burst-poll",
			o: scenario.Overrides{Users: 100, Rate: 300, Pollers: 2, PollersSet: true},
			want: scenario.Workload{Scenario: "burst-poll", Users: 100, Rate: 300, Think: time.Second / 3,
				Duration: time.Second, Burst: true, Limit: 300, Pollers: 2, Credits: true},
		},
		{
			name: "read-heavy: users and think give the rate", scenario: "read-heavy",
			o: scenario.Overrides{Users: 100, Think: time.Second, Duration: 20 * time.Second},
			want: scenario.Workload{Scenario: "read-heavy", Users: 100, Rate: 100, Think: time.Second,
				Duration: 20 * time.Second, ReadRatio: 0.95, Limit: 300},
		},
		{
			name: "mixed: writes at 80% of L", scenario: "mixed",
			want: scenario.Workload{Scenario: "mixed", Users: 10_000, Rate: 480, Think: 20833333333,
				Duration: 2 * time.Minute, ReadRatio: 0.5, Limit: 300},
		},
		{
			name: "outage moved", scenario: "outage",
			o: scenario.Overrides{Duration: 40 * time.Second, OutageAt: 10 * time.Second, OutageDuration: 15 * time.Second},
			want: scenario.Workload{Scenario: "outage", Users: 10_000, Rate: 300, Think: 33333333333,
				Duration: 40 * time.Second, ReadRatio: 0.5, Limit: 300,
				Outage: &scenario.Outage{At: 10 * time.Second, Duration: 15 * time.Second}},
		},
		{
			name: "read ratio zero is an override", scenario: "read-heavy",
			o: scenario.Overrides{ReadRatioSet: true, ReadRatio: 0, Rate: 50},
			want: scenario.Workload{Scenario: "read-heavy", Users: 10_000, Rate: 50, Think: 200 * time.Second,
				Duration: time.Minute, Limit: 300},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, err := scenario.Lookup(tc.scenario)
			if err != nil {
				t.Fatal(err)
			}
			got, err := scenario.Resolve(s, tc.o, 300)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Resolve (-want +got):\n%s", diff)
			}
		})
	}
}

func TestResolveRejects(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		o    scenario.Overrides
		want []string
	}{
		{"rate and think disagree", scenario.Overrides{Users: 10, Rate: 5, Think: time.Second}, []string{"disagree"}},
		{"every problem at once", scenario.Overrides{Users: -1, Duration: -time.Second, ReadRatioSet: true, ReadRatio: 2},
			[]string{"--users", "--duration", "--read-ratio"}},
		{"outage after the end", scenario.Overrides{Duration: 10 * time.Second, OutageAt: 20 * time.Second}, []string{"outage"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, _ := scenario.Lookup("mixed")
			_, err := scenario.Resolve(s, tc.o, 300)
			if err == nil {
				t.Fatal("Resolve succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
	if _, err := scenario.Lookup("nope"); err == nil || !strings.Contains(err.Error(), "read-heavy") {
		t.Errorf("Lookup(nope) = %v, want the list of scenarios", err)
	}
}

func TestIsReadMix(t *testing.T) {
	t.Parallel()
	for _, ratio := range []float64{0, 0.5, 0.8, 0.95, 1} {
		w := scenario.Workload{Rate: 1000, Duration: 10 * time.Second, ReadRatio: ratio}
		writes := 0
		for i := range w.Requests() {
			if !w.IsRead(i) {
				writes++
			}
		}
		if writes != w.Writes() {
			t.Errorf("ratio %v: %d writes, Writes() = %d", ratio, writes, w.Writes())
		}
		if want := int(float64(w.Requests()) * (1 - ratio)); writes < want-1 || writes > want+1 {
			t.Errorf("ratio %v: %d writes of %d, want about %d", ratio, writes, w.Requests(), want)
		}
	}
}
