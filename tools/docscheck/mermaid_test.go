package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// mermaidParser returns node and the installed parse.mjs, skipping the test
// only where there is no Node.js at all. make docs-check (and so make test)
// installs the parser before it runs these tests; DOCSCHECK_MERMAID names
// another installation.
func mermaidParser(t *testing.T) (node, script string) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("no node on PATH: the Mermaid parser runs in Node.js (make docs-check needs it)")
	}
	script = os.Getenv("DOCSCHECK_MERMAID")
	if script == "" {
		script = filepath.Join("..", "..", ".run", "tools", "mermaidcheck", "parse.mjs")
	}
	if _, err := os.Stat(script); err != nil {
		t.Fatalf("the Mermaid parser is not installed at %s: run make docs-check, which installs it with npm ci (%v)", script, err)
	}
	return node, script
}

// TestParseMermaid runs Mermaid's parser on a fixture with a block of each
// kind the docs use, which must parse, and two broken blocks, which must be
// reported at their lines with the parser's message.
func TestParseMermaid(t *testing.T) {
	node, script := mermaidParser(t)
	fixture := filepath.Join("testdata", "mermaid.md")
	problems, _, blocks := Check([]string{fixture})
	if len(problems) != 0 {
		t.Fatalf("link problems in the fixture: %q", problems)
	}
	if len(blocks) != 6 {
		t.Fatalf("found %d Mermaid blocks in %s, want 6", len(blocks), fixture)
	}
	problems, err := ParseMermaid(node, script, blocks)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		fixture + ":16: mermaid: Parse error on line",
		fixture + ":47: mermaid: Parse error on line",
	}
	if len(problems) != len(want) {
		t.Fatalf("problems = %q, want the blocks at lines 16 and 47 refused, no other", problems)
	}
	for i, w := range want {
		if !strings.HasPrefix(problems[i], w) {
			t.Errorf("problem %d = %q, want it to start with %q", i, problems[i], w)
		}
	}
	if !strings.Contains(problems[1], "Expecting 'TXT'") {
		t.Errorf("problem %q does not carry the parser's message", problems[1])
	}
}

func TestParseMermaidWithoutTheParserIsAnError(t *testing.T) {
	blocks := []MermaidBlock{{File: "a.md", Line: 1, Text: "flowchart LR\n a --> b\n"}}
	if _, err := ParseMermaid("node-that-does-not-exist", "parse.mjs", blocks); err == nil {
		t.Error("ParseMermaid without node = nil error, want one")
	}
	if _, err := ParseMermaid("go", filepath.Join(t.TempDir(), "parse.mjs"), blocks); err == nil {
		t.Error("ParseMermaid without the installed script = nil error, want one")
	}
}
