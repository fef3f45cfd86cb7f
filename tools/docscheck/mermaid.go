package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// ParseMermaid runs Mermaid's own parser (tools/mermaidcheck/parse.mjs, at
// script, with its node_modules beside it) on every block, in one Node.js
// process, and returns one problem for each block it refuses:
// "file:line: mermaid: <the parser's message>", line being the block's first
// line; the message's further lines are indented by a tab. An error
// means the parser could not be run at all (no node, not installed).
func ParseMermaid(node, script string, blocks []MermaidBlock) ([]string, error) {
	if len(blocks) == 0 {
		return nil, nil
	}
	if _, err := exec.LookPath(node); err != nil {
		return nil, fmt.Errorf("the Mermaid parser needs Node.js: %w", err)
	}
	if _, err := os.Stat(script); err != nil {
		return nil, fmt.Errorf("the Mermaid parser is not installed (make docs-check installs it with npm ci): %w", err)
	}
	texts := make([]string, len(blocks))
	for i, b := range blocks {
		texts[i] = b.Text
	}
	in, err := json.Marshal(texts)
	if err != nil {
		return nil, err
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(node, script)
	cmd.Stdin = bytes.NewReader(in)
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s %s: %w: %s", node, script, err, strings.TrimSpace(stderr.String()))
	}
	var results []*string
	if err := json.Unmarshal(stdout.Bytes(), &results); err != nil {
		return nil, fmt.Errorf("%s %s: unreadable answer %q: %w", node, script, stdout.String(), err)
	}
	if len(results) != len(blocks) {
		return nil, fmt.Errorf("%s %s: %d answers for %d blocks", node, script, len(results), len(blocks))
	}
	var problems []string
	for i, r := range results {
		if r == nil {
			continue
		}
		msg := strings.ReplaceAll(strings.TrimSpace(*r), "\n", "\n\t")
		problems = append(problems, fmt.Sprintf("%s:%d: mermaid: %s", blocks[i].File, blocks[i].Line, msg))
	}
	return problems, nil
}
