package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckRuns(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "m1-burst/results.json", "{}")
	write(t, dir, "m1-burst/summary.md", "# burst")
	write(t, dir, "m1-burst/throughput.png", "png")
	write(t, dir, "m2-mixed/results.json", "{}")
	write(t, dir, "m2-mixed/cpu.prof", "profile")
	write(t, dir, "m2-mixed/raw/samples.csv", "1,2")
	write(t, dir, "m3-empty/summary.md", "# no results")
	write(t, dir, "m4-big/results.json", strings.Repeat("x", MaxRunFileBytes+1))
	write(t, dir, "stray.json", "{}")
	problems, total := CheckRuns(dir)
	if want := int64(2 + 7 + 3 + 2 + 12 + MaxRunFileBytes + 1); total != want {
		t.Errorf("total = %d, want %d (the kept files only)", total, want)
	}
	want := []string{
		filepath.Join(dir, "m2-mixed", "cpu.prof") + ": a run keeps only",
		filepath.Join(dir, "m2-mixed", "raw") + ": a run keeps only",
		filepath.Join(dir, "m3-empty") + ": no results.json",
		filepath.Join(dir, "m4-big", "results.json") + fmt.Sprintf(": %d bytes, over", MaxRunFileBytes+1),
		filepath.Join(dir, "stray.json") + ": not a run folder",
	}
	if len(problems) != len(want) {
		t.Fatalf("problems = %q, want %d", problems, len(want))
	}
	for i, w := range want {
		if !strings.HasPrefix(problems[i], w) {
			t.Errorf("problem %d = %q, want it to start with %q", i, problems[i], w)
		}
	}
}

func TestCheckRunsTotal(t *testing.T) {
	dir := t.TempDir()
	chunk := strings.Repeat("x", MaxRunFileBytes)
	n := MaxRunsBytes/MaxRunFileBytes + 1
	for i := 0; i < n; i++ {
		write(t, dir, fmt.Sprintf("run-%02d/results.json", i), chunk)
	}
	problems, total := CheckRuns(dir)
	if total != int64(n*MaxRunFileBytes) {
		t.Errorf("total = %d, want %d", total, n*MaxRunFileBytes)
	}
	if len(problems) != 1 || !strings.Contains(problems[0], "bytes of kept runs, over") {
		t.Errorf("problems = %q, want one about the total", problems)
	}
}
