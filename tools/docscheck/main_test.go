package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func write(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCheckFindsBrokenLinksAndAnchors(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "runs/a/results.json", "{}")
	write(t, dir, "other.md", "# Other\n\n## Burst: 10,000 payments\n\n## Burst: 10,000 payments\n")
	doc := write(t, dir, "doc.md", strings.Join([]string{
		"# Doc",
		"[ok](runs/a/results.json) [ok](other.md#burst-10000-payments-1) [ok](#doc) [web](https://example.com/x)",
		"[gone](runs/b/results.json)",
		"[bad anchor](other.md#nope)",
		"`[in code](missing.md)`",
		"```sh",
		"[in a fence](missing.md)",
		"```",
	}, "\n"))
	problems, links, _ := Check([]string{doc})
	if links != 5 {
		t.Errorf("links checked = %d, want 5", links)
	}
	if len(problems) != 2 || !strings.Contains(problems[0], "runs/b/results.json") || !strings.Contains(problems[1], "other.md#nope") {
		t.Errorf("problems = %q, want the missing run and the bad anchor", problems)
	}
}

func TestSlug(t *testing.T) {
	for in, want := range map[string]string{
		"Earlier sessions (m1–m4): one transaction per payment, on a shared machine": "earlier-sessions-m1m4-one-transaction-per-payment-on-a-shared-machine",
		"Tables (`pkg/schema/migrations`)":                                           "tables-pkgschemamigrations",
		"Phase 0: the as-is service":                                                 "phase-0-the-as-is-service",
		"A [linked](x.md) heading":                                                   "a-linked-heading",
		"After the fix (transport per end)":                                          "after-the-fix-transport-per-end",
	} {
		if got := Slug(strings.ReplaceAll(in, "`", "")); got != want {
			t.Errorf("Slug(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestMarkdownFiles(t *testing.T) {
	root := t.TempDir()
	for _, f := range []string{
		"README.md", "docs/design.md", "docs/loadtest/runs/m1/summary.md", "services/gateway/README.md",
		".run/tools/mermaidcheck/node_modules/x/README.md", "tools/mermaidcheck/node_modules/y/README.md",
		"bin/README.md", "services/gateway/NOTES.md",
	} {
		write(t, root, f, "# x\n")
	}
	files, err := MarkdownFiles(root)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range files {
		rel, _ := filepath.Rel(root, f)
		got = append(got, filepath.ToSlash(rel))
	}
	want := []string{"README.md", "docs/design.md", "services/gateway/README.md"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("MarkdownFiles = %q, want %q", got, want)
	}
}
