// Command docscheck verifies the repository's Markdown documentation
// (docs/*.md and every README.md) and the load-test runs it quotes
// (issue 19, point 6). It fails on any of these:
//
//   - Links: a relative link or image that names no existing file or
//     folder, or a #fragment into a Markdown file that names none of that
//     file's headings (GitHub's anchor rules).
//   - Mermaid: a ```mermaid block that Mermaid's own parser refuses
//     (mermaid.parse, run in Node.js by tools/mermaidcheck/parse.mjs, all
//     blocks in one process). It is reported at the block's first line with
//     the parser's message.
//   - Numbers: a row, list item or paragraph of docs/design.md that states
//     a measurement and links to no kept run and no measurement record.
//     The rule, precisely (CheckNumbers):
//     1. The units checked are each table row, each list item with its
//     continuation lines, and each paragraph, outside code fences;
//     headings are not checked.
//     2. A unit states a measurement when its text, less code spans, link
//     targets and images, has a number with a unit of time, rate, size,
//     share or ratio: ms, µs, ns, s, min, h (and seconds, minutes, hours),
//     /s or <word>/s ("300/s", "644.9 deliveries/s"), %, × (or x), bytes,
//     kB, KiB, MB, MiB, GB, GiB; or a count out of a total, "N of M".
//     3. Not measurements: a number right after <, ≤, >, ≥ (a bound or a
//     target), after ~ (an estimate), and the limit's setting "L = 300/s".
//     Units in the sections of ExemptSections (Terminology, Capacity
//     estimate, Proposed processor API changes: definitions, the first
//     assumptions, what we ask of the processor) are not checked.
//     4. Such a unit must link to a kept run, loadtest/runs/<run>/... (its
//     results.json or summary.md), or to a measurement record, one of
//     MeasurementDocs (loadtest.md, loadtest-history.md, dispatcher.md,
//     chaos.md, reads.md, push.md, webhooks.md, writes.md, security.md,
//     scaling.md), each of which gives its numbers with their commands and
//     runs. One such link covers the whole unit.
//   - Kept runs (CheckRuns): each entry of docs/loadtest/runs is a run
//     folder with a results.json, holding only results.json, summary.md and
//     plots (.png, .svg), no file over 256 KiB, all of them together at
//     most 5 MiB. Anything else (profiles, raw output) can be made again.
//
// The Mermaid parser needs Node.js and the npm packages pinned in
// tools/mermaidcheck/package-lock.json; make docs-check installs them into
// .run/tools/mermaidcheck with npm ci (only when missing or changed),
// tests this command, and runs it:
//
//	cd tools/docscheck && GOWORK=off go run . -root ../..
//
// It prints one line per problem and exits 1 if there is any.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"unicode"
)

func main() {
	root := flag.String("root", ".", "the repository's root")
	node := flag.String("node", "node", "the Node.js executable that runs the Mermaid parser")
	parser := flag.String("mermaid", "", "tools/mermaidcheck/parse.mjs as installed with its node_modules (default: ROOT/.run/tools/mermaidcheck/parse.mjs)")
	flag.Parse()
	if *parser == "" {
		*parser = filepath.Join(*root, ".run", "tools", "mermaidcheck", "parse.mjs")
	}
	files, err := MarkdownFiles(*root)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	problems, links, blocks := Check(files)
	mermaid, err := ParseMermaid(*node, *parser, blocks)
	if err != nil {
		fmt.Fprintln(os.Stderr, "docscheck:", err)
		os.Exit(2)
	}
	problems = append(problems, mermaid...)
	design := filepath.Join(*root, "docs", "design.md")
	numbers, measured := CheckNumbers(design)
	problems = append(problems, numbers...)
	runs, runBytes := CheckRuns(filepath.Join(*root, "docs", "loadtest", "runs"))
	problems = append(problems, runs...)
	for _, p := range problems {
		fmt.Println(p)
	}
	fmt.Fprintf(os.Stderr, "docscheck: %d files, %d relative links, %d Mermaid blocks parsed, %d measurements of design.md (rows, items, paragraphs), kept runs %.1f of %d MiB, %d problems\n",
		len(files), links, len(blocks), measured, float64(runBytes)/(1<<20), MaxRunsBytes>>20, len(problems))
	if len(problems) > 0 {
		os.Exit(1)
	}
}

// MarkdownFiles returns docs/*.md and every README.md under root, sorted.
// Folders whose name starts with a dot (.git, .run), node_modules and bin
// are skipped.
func MarkdownFiles(root string) ([]string, error) {
	files, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		return nil, err
	}
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path != root && (strings.HasPrefix(name, ".") || name == "node_modules" || name == "bin") {
				return filepath.SkipDir
			}
			return nil
		}
		if name == "README.md" {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	return files, nil
}

// MermaidBlock is a Mermaid block of a Markdown file: the file, the line of
// the block's first line of text, and its text.
type MermaidBlock struct {
	File string
	Line int
	Text string
}

// Check returns the link problems found in files, how many relative links
// it checked, and the files' Mermaid blocks (for ParseMermaid).
func Check(files []string) (problems []string, links int, blocks []MermaidBlock) {
	anchors := map[string]map[string]bool{}
	anchorsOf := func(path string) (map[string]bool, error) {
		if a, ok := anchors[path]; ok {
			return a, nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		a := Anchors(string(b))
		anchors[path] = a
		return a, nil
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", f, err))
			continue
		}
		doc := Parse(string(b))
		for _, m := range doc.Mermaid {
			blocks = append(blocks, MermaidBlock{File: f, Line: m.Line, Text: m.Text})
		}
		for _, l := range doc.Links {
			if isExternal(l.Target) {
				continue
			}
			links++
			path, frag, _ := strings.Cut(l.Target, "#")
			target := f
			if path != "" {
				target = filepath.Join(filepath.Dir(f), filepath.FromSlash(path))
				if _, err := os.Stat(target); err != nil {
					problems = append(problems, fmt.Sprintf("%s:%d: link %q: no such file", f, l.Line, l.Target))
					continue
				}
			}
			if frag == "" || !strings.HasSuffix(target, ".md") {
				continue
			}
			a, err := anchorsOf(target)
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s:%d: link %q: %v", f, l.Line, l.Target, err))
				continue
			}
			if !a[strings.ToLower(frag)] {
				problems = append(problems, fmt.Sprintf("%s:%d: link %q: no heading with that anchor", f, l.Line, l.Target))
			}
		}
	}
	return problems, links, blocks
}

func isExternal(t string) bool {
	return regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9+.-]*:`).MatchString(t)
}

// Link is a Markdown link or image target and the line it is on.
type Link struct {
	Target string
	Line   int
}

// Block is a fenced code block's text and its first line.
type Block struct {
	Text string
	Line int
}

// Doc is what Parse finds in a Markdown file.
type Doc struct {
	Links    []Link
	Mermaid  []Block
	Headings []string
}

var (
	fenceRE   = regexp.MustCompile("^\\s*(```|~~~)\\s*([A-Za-z0-9_-]*)")
	codeRE    = regexp.MustCompile("`[^`]*`")
	linkRE    = regexp.MustCompile(`\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)`)
	refDefRE  = regexp.MustCompile(`^\s{0,3}\[[^\]]+\]:\s+<?(\S+?)>?(\s|$)`)
	headingRE = regexp.MustCompile(`^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$`)
	htmlSrcRE = regexp.MustCompile(`(?:src|href)="([^"]+)"`)
)

// Parse finds the links, Mermaid blocks and headings of a Markdown text,
// outside code fences and inline code spans.
func Parse(text string) Doc {
	var d Doc
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var fence, lang string
	var block strings.Builder
	start, n := 0, 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if m := fenceRE.FindStringSubmatch(line); m != nil {
			if fence == "" {
				fence, lang, start = m[1], m[2], n+1
				block.Reset()
				continue
			}
			if m[1] == fence && strings.TrimSpace(line) == fence {
				if lang == "mermaid" {
					d.Mermaid = append(d.Mermaid, Block{Text: block.String(), Line: start})
				}
				fence = ""
				continue
			}
		}
		if fence != "" {
			block.WriteString(line)
			block.WriteByte('\n')
			continue
		}
		if m := headingRE.FindStringSubmatch(line); m != nil {
			d.Headings = append(d.Headings, m[2])
		}
		plain := codeRE.ReplaceAllString(line, "")
		for _, m := range linkRE.FindAllStringSubmatch(plain, -1) {
			d.Links = append(d.Links, Link{Target: m[1], Line: n})
		}
		if m := refDefRE.FindStringSubmatch(plain); m != nil {
			d.Links = append(d.Links, Link{Target: m[1], Line: n})
		}
		for _, m := range htmlSrcRE.FindAllStringSubmatch(plain, -1) {
			d.Links = append(d.Links, Link{Target: m[1], Line: n})
		}
	}
	return d
}

// Anchors returns the anchors GitHub gives the headings of a Markdown text.
func Anchors(text string) map[string]bool {
	a := map[string]bool{}
	seen := map[string]int{}
	for _, h := range Parse(text).Headings {
		s := Slug(h)
		if k := seen[s]; k > 0 {
			a[fmt.Sprintf("%s-%d", s, k)] = true
		} else {
			a[s] = true
		}
		seen[s]++
	}
	return a
}

var mdLinkTextRE = regexp.MustCompile(`!?\[([^\]]*)\]\([^)]*\)`)

// Slug is GitHub's anchor for a heading: the text without Markdown links'
// targets, lower-cased, with every character that is not a letter, digit,
// space, hyphen or underscore dropped and spaces turned into hyphens.
func Slug(h string) string {
	h = mdLinkTextRE.ReplaceAllString(h, "$1")
	var b strings.Builder
	for _, r := range strings.ToLower(h) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}
