// Command docscheck verifies the repository's Markdown documentation: every
// relative link and image in docs/*.md and README.md must name a file or
// directory that exists, and a link with a #fragment into a Markdown file
// must name one of that file's headings (GitHub's anchor rules). Mermaid
// blocks get a light check only: the first line must name a diagram type
// GitHub renders, and brackets and quotes must balance. It is not a Mermaid
// parser.
//
//	cd tools/docscheck && GOWORK=off go run . -root ../..
//
// It prints one line per problem and exits 1 if there is any.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"unicode"
)

func main() {
	root := flag.String("root", ".", "the repository's root")
	flag.Parse()
	files, err := filepath.Glob(filepath.Join(*root, "docs", "*.md"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	files = append(files, filepath.Join(*root, "README.md"))
	sort.Strings(files)
	problems, links, diagrams := Check(files)
	for _, p := range problems {
		fmt.Println(p)
	}
	fmt.Fprintf(os.Stderr, "docscheck: %d files, %d relative links, %d Mermaid blocks, %d problems\n", len(files), links, diagrams, len(problems))
	if len(problems) > 0 {
		os.Exit(1)
	}
}

// Check returns the problems found in files, and how many relative links
// and Mermaid blocks it checked.
func Check(files []string) (problems []string, links, diagrams int) {
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
			diagrams++
			if err := CheckMermaid(m.Text); err != nil {
				problems = append(problems, fmt.Sprintf("%s:%d: mermaid: %v", f, m.Line, err))
			}
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
	return problems, links, diagrams
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

var diagramTypes = []string{
	"flowchart", "graph", "sequenceDiagram", "classDiagram", "stateDiagram", "stateDiagram-v2",
	"erDiagram", "journey", "gantt", "pie", "quadrantChart", "requirementDiagram", "gitGraph",
	"C4Context", "mindmap", "timeline", "sankey-beta", "xychart-beta", "block-beta",
}

// CheckMermaid is a light check of a Mermaid block: a known diagram type on
// its first line, and balanced brackets and double quotes on every line.
func CheckMermaid(text string) error {
	lines := strings.Split(text, "\n")
	first := ""
	for _, l := range lines {
		if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "%%") {
			first = t
			break
		}
	}
	kind, _, _ := strings.Cut(first, " ")
	known := false
	for _, t := range diagramTypes {
		if kind == t {
			known = true
		}
	}
	if !known {
		return fmt.Errorf("unknown diagram type %q", kind)
	}
	var all strings.Builder
	for i, l := range lines {
		if strings.Count(l, `"`)%2 != 0 {
			return fmt.Errorf("line %d: unbalanced double quote", i+1)
		}
		l = stripQuoted(l)
		if kind == "erDiagram" {
			l = erRelationRE.ReplaceAllString(l, " ")
		}
		all.WriteString(l)
		all.WriteByte('\n')
	}
	return balanced(all.String())
}

// erRelationRE matches an entity-relationship diagram's cardinality marks
// (||--o{, }|..|{), whose braces are not brackets.
var erRelationRE = regexp.MustCompile(`[|}o]{1,2}(--|\.\.)[|{o]{1,2}`)

// stripQuoted removes the double-quoted labels of a line, where any
// character is allowed.
func stripQuoted(l string) string {
	var b strings.Builder
	in := false
	for _, r := range l {
		if r == '"' {
			in = !in
			continue
		}
		if !in {
			b.WriteRune(r)
		}
	}
	return b.String()
}

func balanced(l string) error {
	pairs := map[rune]rune{')': '(', ']': '[', '}': '{'}
	var stack []rune
	for _, r := range l {
		switch r {
		case '(', '[', '{':
			stack = append(stack, r)
		case ')', ']', '}':
			if len(stack) == 0 || stack[len(stack)-1] != pairs[r] {
				return fmt.Errorf("unbalanced %q", r)
			}
			stack = stack[:len(stack)-1]
		}
	}
	if len(stack) > 0 {
		return fmt.Errorf("unclosed %q", stack[len(stack)-1])
	}
	return nil
}
