package cli_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/finsvc/finance/loadtest/internal/cli"
	"github.com/finsvc/finance/loadtest/internal/fakes"
	"github.com/finsvc/finance/loadtest/internal/report"
	"github.com/finsvc/finance/pkg/entry"
	"github.com/finsvc/finance/pkg/pgtest"
	"github.com/finsvc/finance/pkg/stacktest"
)

func TestMain(m *testing.M) {
	// The hostile scenario starts this binary's hostile-client command in
	// a process of its own; in TestHostileProcess the test binary stands
	// in for the loadtest binary.
	if os.Getenv("LOADTEST_CLI_TEST_AS_BINARY") == "1" {
		err := cli.Run(context.Background(), os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
		os.Exit(entry.Exit("loadtest", err, os.Stderr))
	}
	os.Exit(pgtest.Main(m))
}

type result struct {
	code           int
	stdout, stderr string
	report         *report.Report
	dir            string
	took           time.Duration
}

func run(t *testing.T, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	var res result
	start := time.Now()
	err := cli.Env{
		Getenv: func(string) string { return "" }, Stdout: &out, Stderr: &errb,
		OnReport: func(r *report.Report, dir string) { res.report, res.dir = r, dir },
	}.Run(context.Background(), args)
	res.code = entry.Exit("loadtest", err, &errb)
	res.took = time.Since(start)
	res.stdout, res.stderr = out.String(), errb.String()
	return res
}

// closedURL is an address nothing listens on.
func closedURL(t *testing.T) string {
	t.Helper()
	return "http://" + stacktest.FreeAddr(t)
}

func TestBadInvocationsStopAtOnce(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"no command", nil, []string{"missing command"}},
		{"unknown command", []string{"fire"}, []string{`unknown command "fire"`}},
		{"no scenario", []string{"run"}, []string{"--scenario is required"}},
		{"unknown flag", []string{"run", "--scenario", "burst", "--userz", "3"}, []string{"userz"}},
		{"every problem at once", []string{"run", "--scenario", "nope", "--target", "both", "--url", "ftp://x", "--max-conns", "0"},
			[]string{`unknown scenario "nope"`, `unknown target "both"`, "--url", "--max-conns"}},
		{"rate and think disagree", []string{"run", "--scenario", "read-heavy", "--users", "10", "--rate", "3", "--think", "1s"},
			[]string{"disagree"}},
		{"bad read ratio", []string{"run", "--scenario", "mixed", "--read-ratio", "lots"}, []string{"read-ratio"}},
		{"status polling of the as-is service", []string{"run", "--scenario", "burst-poll", "--target", "legacy"},
			[]string{"status polling needs --target pipeline"}},
		{"pollers on the as-is service", []string{"run", "--scenario", "burst", "--target", "legacy", "--pollers", "2"},
			[]string{"status polling needs --target pipeline"}},
		{"negative pollers", []string{"run", "--scenario", "burst-poll", "--pollers", "-1"}, []string{"--pollers -1"}},
		{"hostile against the as-is service, odd phases", []string{"run", "--scenario", "hostile", "--target", "legacy",
			"--phases", "3", "--hostile-source", "nowhere"}, []string{"pipeline only", "--phases 3", "--hostile-source"}},
		{"table without files", []string{"table"}, []string{"results.json"}},
		{"table with a flag", []string{"table", "--sort", "x"}, []string{`unknown flag "--sort"`}},
		{"report with a flag", []string{"report", "-o", "x"}, []string{`unknown flag "-o"`}},
		{"compare without --out", []string{"compare", "a", "b"}, []string{"--out is required"}},
		{"compare one run", []string{"compare", "--out", "x", "a"}, []string{"two or more run directories (or one hostile run), got 1"}},
		{"compare with an unknown flag", []string{"compare", "--outt", "x"}, []string{"outt"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := run(t, tc.args...)
			if r.code != exitUsage {
				t.Errorf("exit %d, want %d; stderr %s", r.code, exitUsage, r.stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr %q lacks %q", r.stderr, w)
				}
			}
		})
	}
}

func TestUnreachableDependenciesStopAtOnce(t *testing.T) {
	t.Parallel()
	sim := fakes.NewSim(t)
	tgt := fakes.NewTarget(t, sim)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"simulator", []string{"--url", tgt.URL, "--processor-url", closedURL(t)}, "simulator"},
		{"target", []string{"--url", closedURL(t), "--processor-url", sim.URL}, "unreachable"},
		{"database", []string{"--url", tgt.URL, "--processor-url", sim.URL, "--database-url", "postgres://postgres@127.0.0.1:1/x?connect_timeout=2"}, "database"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := run(t, append([]string{"run", "--scenario", "burst", "--target", "legacy", "--quiet"}, tc.args...)...)
			if r.code != exitFailed || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("exit %d stderr %q, want %d mentioning %q", r.code, r.stderr, exitFailed, tc.want)
			}
			// Not a hang: the preflight is bounded (5 s per step).
			if r.took > 20*time.Second {
				t.Errorf("took %s to give up", r.took)
			}
		})
	}
}

func TestRunRefusesUnseededUsers(t *testing.T) {
	t.Parallel()
	sim := fakes.NewSim(t)
	tgt := fakes.NewTarget(t, sim)
	dbURL, _ := fakes.LegacyDB(t, 100, 5)
	r := run(t, "run", "--scenario", "burst", "--target", "legacy", "--users", "10", "--first-user", "100", "--quiet",
		"--url", tgt.URL, "--processor-url", sim.URL, "--database-url", dbURL)
	if r.code != exitFailed || !strings.Contains(r.stderr, "legacy seed --users 10 --start-id 100") {
		t.Errorf("exit %d stderr %q, want a failure naming the seed command", r.code, r.stderr)
	}
}

// asIs makes the fake target behave as the as-is service: execute on the
// processor, then store the row, or not.
func asIs(tgt *fakes.Target, sim *fakes.Sim, pool *pgxpool.Pool, store func(i int) (bool, int)) {
	n := 0
	tgt.Pay = func(p fakes.Payment) (int, string) {
		n++
		sim.Execute(p.UserID, p.Amount, "")
		ok, code := store(n)
		if ok {
			_, _ = pool.Exec(context.Background(), `INSERT INTO payments (amount, user_id, merchant_id) VALUES ($1, $2, $3)`,
				p.Amount, p.UserID, p.MerchantID)
		}
		return code, `{}`
	}
}

func TestRunWritesTheReportAndJudgesTheMoney(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		store    func(i int) (bool, int)
		wantCode int
		want     []string
	}{
		{
			name:     "clean",
			store:    func(int) (bool, int) { return true, 201 },
			wantCode: exitOK,
			want:     []string{"PASSED", "| 0 | 0 | 0 | 0 |"},
		},
		{
			name: "executed, told failed",
			store: func(i int) (bool, int) {
				if i%4 == 0 {
					return false, 504
				}
				return true, 201
			},
			wantCode: exitFailed,
			want:     []string{"FAILED", "lost: 5", "balance mismatch: 5", "| **executed by the processor, client told it failed** | 5 |"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sim := fakes.NewSim(t)
			tgt := fakes.NewTarget(t, sim)
			dbURL, pool := fakes.LegacyDB(t, 100, 20)
			asIs(tgt, sim, pool, tc.store)
			out := filepath.Join(t.TempDir(), "run")
			r := run(t, "run", "--scenario", "burst", "--target", "legacy", "--users", "20", "--rate", "40",
				"--duration", "500ms", "--first-user", "100", "--quiet",
				"--url", tgt.URL, "--processor-url", sim.URL, "--database-url", dbURL, "--out", out)
			if r.code != tc.wantCode {
				t.Fatalf("exit %d, want %d\nstdout %s\nstderr %s", r.code, tc.wantCode, r.stdout, r.stderr)
			}
			summary, err := os.ReadFile(filepath.Join(out, "summary.md"))
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(summary), w) {
					t.Errorf("summary lacks %q:\n%s", w, summary)
				}
			}
			for _, f := range []string{"results.json", "latency.png", "throughput.png", "processor.png", "backlog.png"} {
				if st, err := os.Stat(filepath.Join(out, f)); err != nil || st.Size() == 0 {
					t.Errorf("%s: %v", f, err)
				}
			}
			back, err := report.Read(filepath.Join(out, "results.json"))
			if err != nil {
				t.Fatal(err)
			}
			if back.Result.Writes.Sent != 20 || back.Passed != (tc.wantCode == exitOK) {
				t.Errorf("results.json: %d writes, passed %v", back.Result.Writes.Sent, back.Passed)
			}
			// The report command redraws it.
			if rr := run(t, "report", out); rr.code != 0 || !strings.Contains(rr.stdout, "redrawn") {
				t.Errorf("report: exit %d %s %s", rr.code, rr.stdout, rr.stderr)
			}
			// The compare command draws it beside another run of the scenario.
			prefix := filepath.Join(t.TempDir(), "pair")
			if cr := run(t, "compare", "--out", prefix, out, out); cr.code != 0 || !strings.Contains(cr.stdout, prefix+report.CompareLatency) {
				t.Errorf("compare: exit %d %s %s", cr.code, cr.stdout, cr.stderr)
			}
			// The table command reads it back.
			tr := run(t, "table", out)
			if tr.code != 0 || !strings.Contains(tr.stdout, "| burst | legacy | 20 |") {
				t.Errorf("table: exit %d %s %s", tr.code, tr.stdout, tr.stderr)
			}
		})
	}
}

// The exit statuses pkg/entry gives loadtest's errors.
const (
	exitOK     = 0
	exitFailed = 1
	exitUsage  = 2
)

// TestCompareKinds draws read runs with the read plots, and refuses to
// compare a payment run with a read run.
func TestCompareKinds(t *testing.T) {
	t.Parallel()
	runDir := func(results string) string {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "results.json"), []byte(results), 0o644); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	read := func(target string) string {
		return runDir(`{"kind":"reads","scenario":"read-max","target":"` + target + `","result":{"ok":1000,"reads_per_second":50,"reads":{"count":1000,"p99_ms":20}},` +
			`"cpu":[{"name":"` + target + `","cpu_seconds":0.1}]}`)
	}
	asIs, pipeline := read("legacy"), read("pipeline")
	payment := runDir(`{"scenario":"burst","target":"pipeline","result":{"bucket_seconds":0.1}}`)

	prefix := filepath.Join(t.TempDir(), "read-max")
	if r := run(t, "compare", "--out", prefix, asIs, pipeline); r.code != 0 ||
		!strings.Contains(r.stdout, prefix+"-reads.png") || !strings.Contains(r.stdout, prefix+"-cpu.png") {
		t.Errorf("read runs: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if r := run(t, "compare", "--out", prefix, asIs, payment); r.code != exitFailed || !strings.Contains(r.stderr, "mix payment, read and hostile runs") {
		t.Errorf("mixed kinds: exit %d, stderr %q", r.code, r.stderr)
	}
	// One hostile run alone is drawn: its own quiet and hostile phases.
	hostile := runDir(`{"kind":"hostile","scenario":"hostile","target":"pipeline","p99_ratio":1.1,"result":{"phases":[` +
		`{"index":0,"hostile":false,"victims":{"count":10,"p99_ms":4}},{"index":1,"hostile":true,"victims":{"count":10,"p99_ms":5}}]}}`)
	if r := run(t, "compare", "--out", prefix, hostile); r.code != 0 || !strings.Contains(r.stdout, prefix+"-phases.png") {
		t.Errorf("one hostile run: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if r := run(t, "compare", "--out", prefix, asIs); r.code != exitUsage {
		t.Errorf("one read run: exit %d, want %d", r.code, exitUsage)
	}
}
