package main

import (
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestMeasurements(t *testing.T) {
	for in, want := range map[string][]string{
		"feed p99 8.2 ms, payment p99 17.9 ms":                    {"8.2 ms", "17.9 ms"},
		"205 µs against 185 µs":                                   {"205 µs", "185 µs"},
		"drained at 299.4/s = 1.00 × L, empty at 34.0 s":          {"299.4/s", "1.00 ×", "34.0 s"},
		"644.9 deliveries/s; −11 % with 10 of 100 endpoints dead": {"644.9 deliveries/s", "11 %", "10 of 100"},
		"1.06×, 5,112 bytes of WAL, 171–193 MiB":                  {"1.06×", "5,112 bytes", "193 MiB"},
		"7,436 of 10,000 accepted at 1,000 requests/s":            {"1,000 requests/s", "7,436 of 10,000"},
		// Bounds, estimates and the limit's setting are no measurements.
		"p99 < 100 ms, ≤ 1.15 × N/L, ≥ 0.98 × L, > 2 s":        nil,
		"a partition-serial dispatcher would run ~150 calls/s": nil,
		"with the processor's limit L = 300/s":                 nil,
		// Code spans, link targets and images are not text.
		"0 `429`s, `SIM_LATENCY_P50=50ms`":                      nil,
		"[m9](loadtest/runs/m9-5s/results.json) ![p](x-2s.png)": nil,
		// Counts without a unit, names and versions are no measurements.
		"4,601 payments lost in m12, phase 7, RFC 9457, 2xx, p99": nil,
	} {
		if got := Measurements(in); !reflect.DeepEqual(got, want) {
			t.Errorf("Measurements(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestTextUnits(t *testing.T) {
	text := strings.Join([]string{
		"# Title",                  // 1
		"",                         // 2
		"A paragraph over",         // 3
		"3. lines (no list here).", // 4
		"",                         // 5
		"- an item",                // 6
		"  continued",              // 7
		"- another item",           // 8
		"",                         // 9
		"| a | b |",                // 10
		"| --- | --: |",            // 11
		"| c | d |",                // 12
		"",                         // 13
		"```sh",                    // 14
		"in a fence, 5 ms",         // 15
		"```",                      // 16
		"## Section",               // 17
		"Text",                     // 18
		"1. an ordered item",       // 19
	}, "\n")
	var got []string
	for _, u := range TextUnits(text) {
		got = append(got, fmt.Sprintf("%d@%d:%s", u.Line, u.Section, u.Text))
	}
	want := []string{
		"3@1:A paragraph over\n3. lines (no list here).",
		"6@1:- an item\n  continued",
		"8@1:- another item",
		"10@1:| a | b |",
		"12@1:| c | d |",
		"18@17:Text",
		"19@17:1. an ordered item",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("TextUnits =\n%q\nwant\n%q", got, want)
	}
}

// designFixture is a design.md with every section of ExemptSections.
var designFixture = strings.Join([]string{
	"# Design",
	"### Terminology",
	"| L | the limit, 300/s in every measurement |",
	"### Capacity estimate (assumptions)",
	"- 1,000 reads/s at peak, drained in 700 s",
	"#### A subsection of it",
	"- 12 minutes",
	"### Proposed processor API changes",
	"1. Keep keys for 24 hours.",
	"## Phases",
	"| burst | p99 6.0 s ([run](loadtest/runs/m12-burst-pipeline/results.json)) |",
	"| drain | 0.996 × L ([dispatcher.md](dispatcher.md#results)) |",
	"| read | 604 ms (h8) |",
	"",
	"Drained at 299.7/s, as the plot shows:",
	"![plot](loadtest/runs/m8-outage-pipeline/backlog.png)",
	"",
	"- 28,800 of 28,800 accepted, [architecture](architecture.md)",
	"- p99 < 100 ms: a target",
	"",
	"```mermaid",
	"flowchart LR",
	"    a[\"5 ms\"] --> b",
	"```",
}, "\n")

func TestCheckNumbers(t *testing.T) {
	design := write(t, t.TempDir(), "docs/design.md", designFixture)
	problems, measured := CheckNumbers(design)
	if measured != 5 {
		t.Errorf("measured = %d, want 5 (three rows, the paragraph, an item; the target is none)", measured)
	}
	want := []string{
		design + `:13: "604 ms": a measurement`,
		design + `:15: "299.7/s": a measurement`,
		design + `:18: "28,800 of 28,800": a measurement`,
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

func TestCheckNumbersNamesAnExemptSectionThatIsGone(t *testing.T) {
	text := strings.Replace(designFixture, "### Terminology", "### Words", 1)
	design := write(t, t.TempDir(), "docs/design.md", text)
	problems, _ := CheckNumbers(design)
	if len(problems) == 0 || !strings.Contains(problems[0], `"Terminology", which is no heading`) {
		t.Errorf("problems = %q, want the vanished exempt section first", problems)
	}
	found := false
	for _, p := range problems {
		found = found || strings.Contains(p, `"300/s"`)
	}
	if !found {
		t.Errorf("problems = %q, want the Words section's 300/s checked", problems)
	}
}

// TestTheRuleFindsDesignDocsNumbers guards the rule itself: design.md
// states dozens of measurements, and a rule that found none would pass
// everything. (make docs-check applies the rule to it.)
func TestTheRuleFindsDesignDocsNumbers(t *testing.T) {
	_, measured := CheckNumbers(filepath.Join("..", "..", "docs", "design.md"))
	if measured < 40 {
		t.Errorf("measured = %d units of design.md, want at least 40", measured)
	}
}
