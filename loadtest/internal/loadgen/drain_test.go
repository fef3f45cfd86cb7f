package loadgen

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/finsvc/finance/loadtest/internal/scenario"
	"github.com/finsvc/finance/pkg/simclient"
)

func TestDrainStats(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	// 900 executions, one every 5 ms from 0.5 s: 200 per second.
	var execs []simclient.Execution
	for i := range 900 {
		execs = append(execs, simclient.Execution{Seq: int64(i + 1), ExecutedAt: start.Add(500*time.Millisecond + time.Duration(i)*5*time.Millisecond)})
	}
	samples := []Sample{{T: 1, Backlog: 800}, {T: 2, Backlog: 700}, {T: 3, Backlog: 500}, {T: 4, Backlog: 300}, {T: 5, Backlog: 0, Unknown: 2}, {T: 6}}
	for _, tc := range []struct {
		name  string
		drain Drain // what the drain loop found
		want  Drain
	}{
		{
			name:  "drained",
			drain: Drain{Drained: true, DrainedAt: 5.5},
			// Executions from the peak (1 s) to the empty backlog (5 s).
			want: Drain{Applicable: true, Peak: 800, PeakAt: 1, PendingDrained: true, PendingDrainedAt: 5,
				Drained: true, DrainedAt: 5.5, ExecRate: 200, RateOfLimit: 0.667, Executions: 800},
		},
		{
			name:  "unknown left",
			drain: Drain{UnknownLeft: 2},
			want: Drain{Applicable: true, Peak: 800, PeakAt: 1, PendingDrained: true, PendingDrainedAt: 5,
				UnknownLeft: 2, ExecRate: 200, RateOfLimit: 0.667, Executions: 800},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			res := &Result{Workload: scenario.Workload{Burst: true}, Samples: samples, Drain: tc.drain}
			drainStats(res, 300, true, start, execs)
			if diff := cmp.Diff(tc.want, res.Drain); diff != "" {
				t.Errorf("drain (-want +got):\n%s", diff)
			}
		})
	}
}
