// Package observability checks the pipeline's Grafana dashboard and
// Prometheus rules with the tools' own code: the rules with promtool's
// packages (model/rulefmt parses and validates the file, promql/parser
// every expression), the dashboard with the Grafana Foundation SDK's
// strict decoder and validator, and both against the metrics the services
// export (metrics/*.txt, kept true by each service's
// TestExportedMetricNames). It is its own module so that no service links
// the prometheus module.
package observability

import (
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
)

const (
	rulesFile     = "../helm/finance/files/rules.yaml" // the chart renders it in its PrometheusRule
	dashboardFile = "dashboards/finance-pipeline.json"
	runbooksFile  = "../../docs/operations.md"
)

var promql = parser.NewParser(parser.Options{})

// exported reads metrics/*.txt: every metric name some service exports.
func exported(t *testing.T) map[string]bool {
	t.Helper()
	files, err := filepath.Glob("metrics/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no metrics/*.txt (%v)", err)
	}
	names := map[string]bool{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for n := range strings.FieldsSeq(string(b)) {
			names[n] = true
		}
	}
	return names
}

// loadRules parses the rule file as Prometheus does (unknown fields refused,
// every expression parsed and every rule validated).
func loadRules(t *testing.T) *rulefmt.RuleGroups {
	t.Helper()
	groups, errs := rulefmt.ParseFile(rulesFile, false, model.UTF8Validation, promql, slog.New(slog.DiscardHandler))
	for _, err := range errs {
		t.Error(err)
	}
	if groups == nil || len(groups.Groups) == 0 {
		t.Fatalf("%s: no rule groups", rulesFile)
	}
	return groups
}

// grafanaVars are Grafana's interval variables, replaced as Grafana does
// before it sends a query.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h")

// unknownMetrics parses expr and returns the metric names it selects that
// are neither in known nor a histogram's or summary's series of a name in
// known (_bucket, _sum, _count).
func unknownMetrics(expr string, known map[string]bool) ([]string, error) {
	e, err := promql.ParseExpr(grafanaVars.Replace(expr))
	if err != nil {
		return nil, err
	}
	var missing []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		name := vs.Name
		if name == "" {
			for _, m := range vs.LabelMatchers {
				if m.Name == model.MetricNameLabel {
					name = m.Value
				}
			}
		}
		if name == "" || known[name] {
			return nil
		}
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(name, suffix); ok && known[base] {
				return nil
			}
		}
		missing = append(missing, name)
		return nil
	})
	return missing, nil
}

// TestRules: the rule file parses and validates, and every expression
// names only metrics that a service exports or a rule records.
func TestRules(t *testing.T) {
	t.Parallel()
	groups := loadRules(t)
	known := exported(t)
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			if r.Record != "" {
				known[r.Record] = true
			}
		}
	}
	alerts := 0
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			name := r.Record + r.Alert
			missing, err := unknownMetrics(r.Expr, known)
			if err != nil {
				t.Errorf("%s: %v", name, err)
			}
			if len(missing) > 0 {
				t.Errorf("%s names metrics no service exports: %v", name, missing)
			}
			if r.Alert != "" {
				alerts++
				for _, k := range []string{"summary", "description", "runbook"} {
					if r.Annotations[k] == "" {
						t.Errorf("%s: no %s annotation", r.Alert, k)
					}
				}
				if r.Labels["severity"] == "" {
					t.Errorf("%s: no severity label", r.Alert)
				}
			}
		}
	}
	if alerts == 0 {
		t.Error("no alert in the rule file")
	}
}

// TestRunbooks: every alert has a runbook in docs/operations.md, a section
// titled with its name that names the console page and a financectl
// command.
func TestRunbooks(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile(runbooksFile)
	if err != nil {
		t.Fatal(err)
	}
	sections := map[string]string{}
	for s := range strings.SplitSeq("\n"+string(doc), "\n### ") {
		title, body, _ := strings.Cut(s, "\n")
		sections[strings.TrimSpace(title)] = body
	}
	for _, g := range loadRules(t).Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			body, ok := sections[r.Alert]
			if !ok {
				t.Errorf("%s: no section \"### %s\" in %s", r.Alert, r.Alert, runbooksFile)
				continue
			}
			if !strings.Contains(body, "/console") || !strings.Contains(body, "financectl ") {
				t.Errorf("%s: its runbook names no console page (/console...) or no financectl command", r.Alert)
			}
		}
	}
}

// TestDashboard: the dashboard decodes strictly and validates as a Grafana
// dashboard (the Foundation SDK's schema types), panel ids are unique,
// every query parses as PromQL, and names only metrics that a service
// exports or a rule records.
func TestDashboard(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard.Dashboard
	if err := sdkErr(d.UnmarshalJSONStrict(raw)); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if err := sdkErr(d.Validate()); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}

	known := exported(t)
	for _, g := range loadRules(t).Groups {
		for _, r := range g.Rules {
			if r.Record != "" {
				known[r.Record] = true
			}
		}
	}
	// The queries, read from the JSON itself: the SDK decodes targets into
	// per-datasource types, and only the expression matters here.
	var doc struct {
		Panels []struct {
			ID      int    `json:"id"`
			Type    string `json:"type"`
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	ids := map[int]bool{}
	queries := 0
	for _, p := range doc.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d repeats", p.ID)
		}
		ids[p.ID] = true
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			queries++
			missing, err := unknownMetrics(tg.Expr, known)
			if err != nil {
				t.Errorf("panel %q: %q: %v", p.Title, tg.Expr, err)
			}
			if len(missing) > 0 {
				t.Errorf("panel %q names metrics no service exports: %v", p.Title, missing)
			}
		}
	}
	if queries == 0 {
		t.Error("the dashboard has no query")
	}
}

// sdkErr is err, or nil when err is an empty cog.BuildErrors: the SDK's
// strict decoder returns its (nil) error list as a non-nil error.
func sdkErr(err error) error {
	var be cog.BuildErrors
	if errors.As(err, &be) && len(be) == 0 {
		return nil
	}
	return err
}

// TestUnknownMetricsCatches: the name check refuses what it must, so that
// the tests above can fail.
func TestUnknownMetricsCatches(t *testing.T) {
	t.Parallel()
	known := map[string]bool{"a_seconds": true, "b_total": true}
	for _, tc := range []struct {
		expr string
		want []string
	}{
		{`sum(rate(b_total[5m]))`, nil},
		{`histogram_quantile(0.9, sum by (le) (rate(a_seconds_bucket[$__rate_interval])))`, nil},
		{`rate(b_totl[5m])`, []string{"b_totl"}},
		{`a_seconds / on() c_gauge`, []string{"c_gauge"}},
		{`{__name__="d_total"}`, []string{"d_total"}},
	} {
		got, err := unknownMetrics(tc.expr, known)
		if err != nil {
			t.Errorf("%s: %v", tc.expr, err)
			continue
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: unknown %v, want %v", tc.expr, got, tc.want)
		}
	}
	var d dashboard.Dashboard
	if err := sdkErr(d.UnmarshalJSONStrict([]byte(`{"title":"x","panels":[],"templating":{"list":[]},"annotations":{"list":[]},"bogus":1}`))); err == nil {
		t.Error("the dashboard decoder accepts an unknown field")
	}
	if _, err := unknownMetrics(`sum(rate(b_total[5m])`, known); err == nil {
		t.Error("a malformed expression parses")
	}
	if _, errs := rulefmt.Parse([]byte("groups:\n  - name: x\n    rules:\n      - alert: A\n        expr: rate(x[5m]\n"),
		false, model.UTF8Validation, promql, slog.New(slog.DiscardHandler)); len(errs) == 0 {
		t.Error("rulefmt accepts a rule whose expression does not parse")
	}
}
