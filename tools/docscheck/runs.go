package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// The kept runs (docs/loadtest/runs) stay small: they are the evidence the
// docs link to, not a store of load-test output. When the rule was written
// the 70 kept files held 3.1 MiB and the largest was 117 KiB.
const (
	// MaxRunsBytes bounds the sum of every file under docs/loadtest/runs.
	MaxRunsBytes = 5 << 20
	// MaxRunFileBytes bounds one file of a run.
	MaxRunFileBytes = 256 << 10
)

// keptRunFile reports whether a run folder may hold a file of that name:
// the run's results.json, its summary.md, and plots drawn from them. Other
// output (profiles, raw samples, logs, binaries) can be made again and is
// not kept.
func keptRunFile(name string) bool {
	switch name {
	case "results.json", "summary.md":
		return true
	}
	return strings.HasSuffix(name, ".png") || strings.HasSuffix(name, ".svg")
}

// CheckRuns returns the problems of the kept runs under dir and the bytes
// they hold. Each entry of dir must be a run folder holding results.json and
// nothing but keptRunFile files (no subfolders), each at most
// MaxRunFileBytes, and all of them together at most MaxRunsBytes.
func CheckRuns(dir string) (problems []string, total int64) {
	runs, err := os.ReadDir(dir)
	if err != nil {
		return []string{fmt.Sprintf("%s: %v", dir, err)}, 0
	}
	for _, run := range runs {
		path := filepath.Join(dir, run.Name())
		if !run.IsDir() {
			problems = append(problems, fmt.Sprintf("%s: not a run folder (kept runs are docs/loadtest/runs/<run>/results.json)", path))
			continue
		}
		files, err := os.ReadDir(path)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", path, err))
			continue
		}
		hasResults := false
		for _, f := range files {
			fpath := filepath.Join(path, f.Name())
			if f.IsDir() || !keptRunFile(f.Name()) {
				problems = append(problems, fmt.Sprintf("%s: a run keeps only results.json, summary.md and plots (.png, .svg)", fpath))
				continue
			}
			info, err := f.Info()
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s: %v", fpath, err))
				continue
			}
			total += info.Size()
			if info.Size() > MaxRunFileBytes {
				problems = append(problems, fmt.Sprintf("%s: %d bytes, over the %d a kept file may hold", fpath, info.Size(), MaxRunFileBytes))
			}
			hasResults = hasResults || f.Name() == "results.json"
		}
		if !hasResults {
			problems = append(problems, fmt.Sprintf("%s: no results.json", path))
		}
	}
	if total > MaxRunsBytes {
		problems = append(problems, fmt.Sprintf("%s: %d bytes of kept runs, over the %d allowed (keep results.json and summary.md only, or drop superseded runs)", dir, total, MaxRunsBytes))
	}
	return problems, total
}
