package testkit

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// NameRecorder is a prometheus.Registerer that keeps the names of the
// metrics its collectors describe, vectors included (a registry's Gather
// shows a vector only once it has children). Metrics constructors register
// into it as into a registry.
type NameRecorder struct {
	mu    sync.Mutex
	names map[string]bool
}

// NewNameRecorder returns an empty NameRecorder.
func NewNameRecorder() *NameRecorder { return &NameRecorder{names: map[string]bool{}} }

// fqName finds a Desc's name in its String(), the only place client_golang
// shows it: Desc{fqName: "name", help: ...}.
var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

// Register records the names c describes.
func (r *NameRecorder) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc)
	go func() {
		c.Describe(ch)
		close(ch)
	}()
	r.mu.Lock()
	defer r.mu.Unlock()
	for d := range ch {
		m := fqName.FindStringSubmatch(d.String())
		if m == nil {
			return fmt.Errorf("no name in %s", d)
		}
		r.names[m[1]] = true
	}
	return nil
}

// MustRegister records the names of every collector; it panics on a Desc
// without a name.
func (r *NameRecorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

// Unregister keeps the names: they were exported while registered.
func (r *NameRecorder) Unregister(prometheus.Collector) bool { return true }

// Names returns the recorded names, sorted.
func (r *NameRecorder) Names() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.names))
	for n := range r.names {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// MetricsDir is where the lists of exported metric names live, from the
// repository's root: deploy/observability checks its dashboard and alert
// rules against them.
const MetricsDir = "deploy/observability/metrics"

// CheckMetricNames compares the names rec recorded with the list
// MetricsDir/<list>.txt (one name a line), and fails the test when they
// differ: a metric added, renamed or removed must change the list, and the
// dashboard and rules that read it are checked against the new one. With
// UPDATE_METRIC_NAMES=1 in the environment it writes the list instead.
func CheckMetricNames(tb testing.TB, list string, rec *NameRecorder) {
	tb.Helper()
	root, err := repoRoot()
	if err != nil {
		tb.Fatal(err)
	}
	path := filepath.Join(root, MetricsDir, list+".txt")
	got := strings.Join(rec.Names(), "\n") + "\n"
	if os.Getenv("UPDATE_METRIC_NAMES") == "1" {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			tb.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		tb.Fatalf("%v (UPDATE_METRIC_NAMES=1 go test ... writes it)", err)
	}
	if string(want) != got {
		tb.Errorf("the exported metrics differ from %s (UPDATE_METRIC_NAMES=1 go test ... rewrites it; then check the dashboard and rules with go test ./deploy/observability/...):\nlisted:\n%s\nexported:\n%s",
			path, want, got)
	}
}

// repoRoot is the nearest directory above the working directory holding go.work.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.work above the working directory")
		}
		dir = parent
	}
}
