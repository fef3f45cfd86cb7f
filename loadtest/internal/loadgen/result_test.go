package loadgen

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The per-second series leave their zeros out of results.json, and reading
// the file back gives the same seconds and samples.
func TestSecondsAndSamplesLeaveZerosOut(t *testing.T) {
	t.Parallel()
	in := Result{
		Seconds: []Second{
			{T: 0, Writes: SecondOp{Sent: 2000, Done: 1990, OK: 1990, P50: 12.5, P90: 40, P99: 87.4, Max: 120.1}},
			{T: 0.1, Reads: SecondOp{Sent: 3, Done: 3, OK: 3, P50: 1.2, P90: 1.3, P99: 1.4, Max: 1.4}},
			{T: 0.2},
		},
		Samples: []Sample{
			{T: 0.9, Phase: "load", ProcCalls: 157.6, ProcExecuted: 157.6, Backlog: 57, InFlight: 2},
			{T: 1.9, Phase: "drain", ProcOutage: 12, OutageActive: true, Unknown: 1, WritesOK: 3, ReadsOK: 4, ProcRateLimited: 5},
		},
	}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, absent := range []string{`"reads":{}`, `"writes":{}`, `"failed":0`, `"outage_active":false`, `"reads_ok_per_s":0`} {
		if strings.Contains(s, absent) {
			t.Errorf("results.json holds %s, a zero it should leave out:\n%s", absent, s)
		}
	}
	if !strings.Contains(s, `{"t":0,"writes":{"sent":2000`) || !strings.Contains(s, `{"t":0.2}`) {
		t.Errorf("every second keeps its t:\n%s", s)
	}
	var out Result
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(in.Seconds, out.Seconds); diff != "" {
		t.Errorf("seconds read back (-wrote +read):\n%s", diff)
	}
	if diff := cmp.Diff(in.Samples, out.Samples); diff != "" {
		t.Errorf("samples read back (-wrote +read):\n%s", diff)
	}
}
