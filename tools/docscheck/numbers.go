package main

import (
	"fmt"
	"os"
	"path"
	"regexp"
	"strings"
)

// MeasurementDocs are the measurement records of docs/: each states its
// numbers with the command and the machine that made them, and links the
// kept runs it quotes. They are the docs design.md's introduction names as
// the ones that measured its numbers.
var MeasurementDocs = []string{
	"loadtest.md", "loadtest-history.md", "dispatcher.md", "chaos.md", "reads.md",
	"push.md", "webhooks.md", "writes.md", "security.md", "scaling.md",
}

// ExemptSections are the headings of design.md (each matched as the start
// of a heading's text) whose sections state requirements, first estimates,
// definitions or proposals, not measurements: their numbers are targets,
// assumptions or settings. A section's subsections are exempt with it. Every
// entry must still name a heading, so a renamed section is noticed.
var ExemptSections = []string{
	"Terminology",                    // definitions, among them the limit's setting
	"Capacity estimate",              // the first assumptions, made before anything was measured
	"Proposed processor API changes", // what we ask the processor for (key retention)
}

// A measurement is a number with a unit of time, rate, size, share or
// ratio: "8.2 ms", "205 µs", "6.0 s", "300/s", "644.9 deliveries/s",
// "11 %", "1.06×", "5,112 bytes", "171 MiB"; or a count out of a total:
// "7,436 of 10,000".
var measurementRE = regexp.MustCompile(`(?:^|[^\p{L}\p{N}_.,])(\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?` +
	`[ \x{a0}\x{2009}\x{202f}]?` +
	`(ms|µs|μs|us|ns|seconds?|s|min|minutes?|h|hours?|%|×|x|bytes|kB|KB|KiB|MB|MiB|GB|GiB|TB|TiB|(?:\p{L}+ ?)?/s)` +
	`(?:$|[^\p{L}\p{N}_])`)

// countRE matches a count out of a total, "28,800 of 28,800".
var countRE = regexp.MustCompile(`(?:^|[^\p{L}\p{N}_.,])(\d{1,3}(?:,\d{3})+|\d+) of (\d{1,3}(?:,\d{3})+|\d+)(?:$|[^\p{L}\p{N}_.,])`)

// boundRE matches the end of the text before a number that makes it no
// measurement: a bound, a target ("p99 < 100 ms", "≤ 1.15 × N/L"), or an
// estimate written with a tilde ("~150 calls/s").
var boundRE = regexp.MustCompile(`(<=|>=|<|≤|>|≥|~)\s*$`)

// settingRE matches the end of the text before the processor limit's
// setting, "L = 300/s".
var settingRE = regexp.MustCompile(`\bL\s*=\s*$`)

// mdLinkRE matches a Markdown link or image: the "!" of an image, the text
// and the target.
var mdLinkRE = regexp.MustCompile(`(!?)\[([^\]]*)\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)`)

// Measurements returns the measurements stated in a Markdown row, item or
// paragraph, outside code spans, link targets and images, less bounds,
// estimates and the limit's setting.
func Measurements(text string) []string {
	// A code span becomes a word, so that "0 `429`s" is no "0 s".
	plain := codeRE.ReplaceAllString(text, "CODE")
	plain = mdLinkRE.ReplaceAllStringFunc(plain, func(m string) string {
		sub := mdLinkRE.FindStringSubmatch(m)
		if sub[1] == "!" {
			return ""
		}
		return sub[2]
	})
	var found []string
	for _, loc := range measurementRE.FindAllStringSubmatchIndex(plain, -1) {
		before := plain[:loc[2]]
		if boundRE.MatchString(before) || settingRE.MatchString(before) {
			continue
		}
		found = append(found, plain[loc[2]:loc[5]])
	}
	for _, loc := range countRE.FindAllStringSubmatchIndex(plain, -1) {
		if !boundRE.MatchString(plain[:loc[2]]) {
			found = append(found, plain[loc[2]:loc[5]])
		}
	}
	return found
}

// linksToMeasurement reports whether text links (not as an image) to a
// kept run, loadtest/runs/<run>/..., or to one of MeasurementDocs, its
// targets being relative to docs/.
func linksToMeasurement(text string) bool {
	plain := codeRE.ReplaceAllString(text, "")
	for _, m := range mdLinkRE.FindAllStringSubmatch(plain, -1) {
		if m[1] == "!" || isExternal(m[3]) {
			continue
		}
		target, _, _ := strings.Cut(m[3], "#")
		if target == "" {
			continue
		}
		target = path.Clean(target)
		if run, ok := strings.CutPrefix(target, "loadtest/runs/"); ok && run != "" {
			return true
		}
		for _, d := range MeasurementDocs {
			if target == d {
				return true
			}
		}
	}
	return false
}

// TextUnit is one unit of Markdown text that design.md's rule is applied to:
// a table row, a list item (with its continuation lines) or a paragraph,
// outside code fences, and the line it starts on. Headings are not units.
type TextUnit struct {
	Line int
	Text string
	// Section is the line of the heading of the section it is in, 0
	// before the first heading.
	Section int
}

var (
	listItemRE = regexp.MustCompile(`^\s*(?:[-*+]|(\d+)[.)])\s+`)
	tableSepRE = regexp.MustCompile(`^\s*\|[\s|:-]*$`)
)

// TextUnits splits a Markdown text into its table rows, list items and
// paragraphs, each with the heading of the section it is in, skipping code
// fences.
func TextUnits(text string) []TextUnit {
	var units []TextUnit
	var cur *TextUnit
	curIsItem := false
	flush := func() {
		if cur != nil {
			units = append(units, *cur)
			cur = nil
		}
	}
	section := 0
	fence := ""
	for i, line := range strings.Split(text, "\n") {
		n := i + 1
		if m := fenceRE.FindStringSubmatch(line); m != nil {
			if fence == "" {
				flush()
				fence = m[1]
				continue
			}
			if m[1] == fence && strings.TrimSpace(line) == fence {
				fence = ""
				continue
			}
		}
		if fence != "" {
			continue
		}
		switch {
		case strings.TrimSpace(line) == "":
			flush()
		case headingRE.MatchString(line):
			flush()
			section = n
		case strings.HasPrefix(strings.TrimSpace(line), "|"):
			flush()
			if !tableSepRE.MatchString(line) {
				units = append(units, TextUnit{Line: n, Text: line, Section: section})
			}
		case startsListItem(line, cur != nil && !curIsItem):
			flush()
			cur = &TextUnit{Line: n, Text: line, Section: section}
			curIsItem = true
		default:
			if cur == nil {
				cur = &TextUnit{Line: n, Section: section}
				curIsItem = false
			} else {
				cur.Text += "\n"
			}
			cur.Text += line
		}
	}
	flush()
	return units
}

// startsListItem reports whether line starts a list item. As in CommonMark,
// an ordered item that does not start at 1 cannot interrupt a paragraph: in
// one, "3. One primary ..." is a line of the paragraph.
func startsListItem(line string, inParagraph bool) bool {
	m := listItemRE.FindStringSubmatch(line)
	if m == nil {
		return false
	}
	return !inParagraph || m[1] == "" || m[1] == "1"
}

// exemptHeadings returns, for the line of each heading of text, whether its
// section is exempt: it starts with an ExemptSections entry, or
// it is a subsection of one that does. It also returns the entries that
// named no heading.
func exemptHeadings(text string) (exempt map[int]bool, unused []string) {
	exempt = map[int]bool{}
	used := map[string]bool{}
	exemptLevel := 0 // the level of the exempt section we are in, 0 if none
	fence := ""
	for i, line := range strings.Split(text, "\n") {
		if m := fenceRE.FindStringSubmatch(line); m != nil {
			if fence == "" {
				fence = m[1]
			} else if m[1] == fence && strings.TrimSpace(line) == fence {
				fence = ""
			}
			continue
		}
		if fence != "" {
			continue
		}
		m := headingRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		level := len(m[1])
		if exemptLevel > 0 && level <= exemptLevel {
			exemptLevel = 0
		}
		for _, e := range ExemptSections {
			if strings.HasPrefix(m[2], e) {
				used[e] = true
				if exemptLevel == 0 {
					exemptLevel = level
				}
			}
		}
		exempt[i+1] = exemptLevel > 0
	}
	for _, e := range ExemptSections {
		if !used[e] {
			unused = append(unused, e)
		}
	}
	return exempt, unused
}

// CheckNumbers applies design.md's rule to the file at path (docs/design.md)
// and returns its problems and how many units state a measurement. The rule:
// every table row, list item and paragraph outside ExemptSections that
// states a measurement (see Measurements) links to a kept run
// (loadtest/runs/<run>/...) or to a measurement record (MeasurementDocs).
// One link covers the whole row, item or paragraph; code fences (diagrams)
// and headings are not checked.
func CheckNumbers(file string) (problems []string, measured int) {
	b, err := os.ReadFile(file)
	if err != nil {
		return []string{fmt.Sprintf("%s: %v", file, err)}, 0
	}
	text := string(b)
	exempt, unused := exemptHeadings(text)
	for _, e := range unused {
		problems = append(problems, fmt.Sprintf("%s: docscheck's ExemptSections names %q, which is no heading here", file, e))
	}
	for _, u := range TextUnits(text) {
		if exempt[u.Section] {
			continue
		}
		ms := Measurements(u.Text)
		if len(ms) == 0 {
			continue
		}
		measured++
		if linksToMeasurement(u.Text) {
			continue
		}
		problems = append(problems, fmt.Sprintf("%s:%d: %s: a measurement, but no link to a kept run (loadtest/runs/<run>/...) or a measurement record (%s)",
			file, u.Line, quoteList(ms), strings.Join(MeasurementDocs, ", ")))
	}
	return problems, measured
}

func quoteList(ms []string) string {
	q := make([]string, len(ms))
	for i, m := range ms {
		q[i] = fmt.Sprintf("%q", m)
	}
	return strings.Join(q, ", ")
}
