package report

import "testing"

// TestLocalUsed counts a process's difference, a new process's whole time,
// and nothing of one that exited.
func TestLocalUsed(t *testing.T) {
	t.Parallel()
	k := func(pid string) string { return "postgres" + procSep + pid }
	before := CPUReading{k("10"): 5, k("11"): 100, "gateway": 3}
	after := CPUReading{k("10"): 6.5, k("12"): 2, "gateway": 4}
	got, ok := localUsed("postgres", before, after)
	if !ok || got != 3.5 {
		t.Errorf("used %.2f (found %v), want 3.5: 1.5 of pid 10 and 2 of the new pid 12, none of the exited 11", got, ok)
	}
	used := CPUUsed(map[string]string{"postgres": ProcPrefix + "postgres", "gateway": "http://gw/metrics"}, before, after, map[string]string{})
	if len(used) != 2 || used[0].Seconds != 1 || used[1].Seconds != 3.5 {
		t.Errorf("CPUUsed = %+v, want gateway 1 s, postgres 3.5 s", used)
	}
}
