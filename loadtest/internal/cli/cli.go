// Package cli is the load generator's command line: `loadtest run`,
// `loadtest scenarios` and `loadtest table`.
//
// Exit codes: 0 the run passed; 1 the run failed its invariant checks or
// could not run (target unreachable, users not seeded, ...); 2 the
// invocation is wrong. Every failure is one clear line on stderr, at once.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/finsvc/finance/pkg/entry"

	"github.com/finsvc/finance/loadtest/internal/reads"
	"github.com/finsvc/finance/loadtest/internal/report"
	"github.com/finsvc/finance/loadtest/internal/scenario"
)

// usagef is a wrong invocation: exit 2.
var usagef = entry.Usagef

// failedRun is a run that completed and was judged failed.
var errFailedRun = errors.New("the run failed its checks")

// Env is what a command reads and writes besides its arguments.
type Env struct {
	Getenv func(string) string
	Stdout io.Writer
	Stderr io.Writer
	// Progress receives the live progress line; nil for Stderr.
	Progress io.Writer
	// OnReport, if set, receives the run's report (tests read it).
	OnReport func(*report.Report, string)
	// OnReads, if set, receives a read run's report.
	OnReads func(*reads.Report, string)
	// OnHostile, if set, receives a hostile run's report.
	OnHostile func(*reads.HostileReport, string)
}

const mainUsage = `usage: loadtest <command> [flags]

commands:
  run --scenario S [--target pipeline|legacy] [flags]   run a load test, check the money, write the report
  scenarios                                              list the scenarios and their defaults
  table results.json...                                  print a Markdown table of runs (for docs/loadtest.md)
  report DIR...                                          redraw the plots and summary.md of runs from their results.json
  compare --out PREFIX DIR DIR...                        draw runs of one scenario side by side (the as-is service first)
  help [command]                                         show usage

exit codes: 0 passed, 1 failed (checks or could not run), 2 bad usage`

// Run runs the command in args (without the program name). It is the
// binary's body (pkg/entry): a wrong invocation is an *entry.UsageError
// (exit 2), a failed run or any other failure exits 1.
func Run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return Env{Getenv: getenv, Stdout: stdout, Stderr: stderr}.Run(ctx, args)
}

// Run is Run with env's hooks (tests set OnReport and Progress).
func (env Env) Run(ctx context.Context, args []string) error {
	if env.Progress == nil {
		env.Progress = env.Stderr
	}
	if len(args) == 0 {
		return &entry.UsageError{Err: errors.New("missing command"), Usage: mainUsage + "\n"}
	}
	var err error
	switch args[0] {
	case "help", "-h", "-help", "--help":
		if len(args) > 1 && args[1] == "run" {
			fs, _ := runFlags(env.Getenv)
			printRunUsage(env.Stdout, fs)
		} else {
			fmt.Fprintln(env.Stdout, mainUsage)
		}
		return nil
	case "run":
		if scenarioArg(args[1:]) == reads.Hostile {
			err = hostileCommand(ctx, args[1:], env)
			break
		}
		if reads.IsScenario(scenarioArg(args[1:])) {
			err = readsCommand(ctx, args[1:], env)
			break
		}
		err = runCommand(ctx, args[1:], env)
	case "hostile-client": // started by run --scenario hostile, not by hand
		err = hostileClientCommand(ctx, args[1:], env)
	case "scenarios":
		err = scenariosCommand(args[1:], env)
	case "table":
		err = tableCommand(args[1:], env)
	case "report":
		err = reportCommand(args[1:], env)
	case "compare":
		err = compareCommand(args[1:], env)
	default:
		return &entry.UsageError{Err: fmt.Errorf("unknown command %q", args[0]), Usage: mainUsage + "\n"}
	}
	if err != nil {
		return fmt.Errorf("%s: %w", args[0], err)
	}
	return nil
}

func scenariosCommand(args []string, env Env) error {
	if len(args) > 0 {
		return usagef("scenarios takes no arguments")
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\tusers\trate\tduration\treads\toutage\twhat")
	for _, n := range scenario.Names() {
		s := scenario.All()[n]
		r := fmt.Sprintf("%.0f/s", s.Rate)
		if s.Rate == 0 {
			r = fmt.Sprintf("writes %.0f%% of L", s.WritesOfLimit*100)
		}
		o := "-"
		if s.Outage != nil {
			o = fmt.Sprintf("%s at %s", s.Outage.Duration, s.Outage.At)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%.0f%%\t%s\t%s\n", n, s.Users, r, s.Duration, s.ReadRatio*100, o, s.Summary)
	}
	for _, n := range []string{reads.ReadUsers, reads.ReadMax, reads.SSELatency} {
		d := reads.Defaults(n)
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t-\t%s\n", n, max(d.VUs, d.Conns, d.Streams), "-", d.Duration, "100%", reads.Scenarios()[n])
	}
	h := reads.HostileDefaults()
	fmt.Fprintf(tw, "%s\t%d\t%.0f/s\t%s\t%.0f%%\t-\t%s\n", reads.Hostile, h.Users, h.Rate,
		durationString(h.Warmup+time.Duration(h.Phases)*h.Phase), (1-h.PaymentRatio)*100, reads.HostileSummary)
	return tw.Flush()
}

const (
	tableUsage   = "usage: loadtest table RUN_DIR|results.json ...\n  Prints the runs' Markdown results table, one row per run."
	reportUsage  = "usage: loadtest report RUN_DIR ...\n  Redraws each run's summary.md and PNG plots from its results.json."
	compareUsage = "usage: loadtest compare --out PREFIX RUN_DIR RUN_DIR ...\n" +
		"  Draws two or more runs of one scenario side by side, from their results.json. Payment runs:\n" +
		"  PREFIX" + report.CompareThroughput + ", PREFIX" + report.CompareLatency + " and, when every run measured its\n" +
		"  processes' CPU, PREFIX" + report.CompareCPU + ". Read runs (read-max, read-users): PREFIX" + reads.CompareReads + "\n" +
		"  and PREFIX" + reads.CompareCPU + ". Hostile runs, one or more: PREFIX" + reads.ComparePhases + ", the victims' p99\n" +
		"  in each phase. Give the as-is service's run first."
)

// onlyPaths reports whether args hold no flags. --help and -h print usage
// and make it return false with a nil error; any other flag is an error.
func onlyPaths(args []string, usage string, env Env) (bool, error) {
	for _, a := range args {
		switch {
		case a == "-h" || a == "-help" || a == "--help":
			fmt.Fprintln(env.Stdout, usage)
			return false, nil
		case strings.HasPrefix(a, "-"):
			return false, usagef("unknown flag %q: this command takes no flags\n%s", a, usage)
		}
	}
	return true, nil
}

func tableCommand(args []string, env Env) error {
	if len(args) == 0 {
		return usagef("table wants one or more results.json files (or run directories)\n%s", tableUsage)
	}
	if ok, err := onlyPaths(args, tableUsage, env); !ok {
		return err
	}
	var reps []*report.Report
	for _, a := range args {
		if st, err := os.Stat(a); err == nil && st.IsDir() {
			a = filepath.Join(a, "results.json")
		}
		if _, err := reads.ReadReport(a); err == nil || reads.IsHostileReport(a) {
			return fmt.Errorf("%s is a read run's (its summary.md is its table)", a)
		}
		r, err := report.Read(a)
		if err != nil {
			return err
		}
		reps = append(reps, r)
	}
	sort.SliceStable(reps, func(i, j int) bool {
		if reps[i].Scenario != reps[j].Scenario {
			return reps[i].Scenario < reps[j].Scenario
		}
		return reps[i].Target < reps[j].Target
	})
	fmt.Fprint(env.Stdout, report.Table(reps))
	return nil
}

func reportCommand(args []string, env Env) error {
	if len(args) == 0 {
		return usagef("report wants one or more run directories\n%s", reportUsage)
	}
	if ok, err := onlyPaths(args, reportUsage, env); !ok {
		return err
	}
	for _, dir := range args {
		// A read run's results.json is another shape: redrawing it as a
		// money run would overwrite it with an empty report.
		if _, err := reads.ReadReport(dir); err == nil || reads.IsHostileReport(dir) {
			return fmt.Errorf("%s is a read run: its summary.md is written by the run itself", dir)
		}
		r, err := report.Read(filepath.Join(dir, "results.json"))
		if err != nil {
			return err
		}
		if err := report.Write(r, dir); err != nil {
			return fmt.Errorf("%s: %w", dir, err)
		}
		fmt.Fprintf(env.Stdout, "%s: summary.md and %d plots redrawn\n", dir, len(r.Plots))
	}
	return nil
}

func compareCommand(args []string, env Env) error {
	fs := flag.NewFlagSet("compare", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	out := fs.String("out", "", "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(env.Stdout, compareUsage)
			return nil
		}
		return usagef("%v\n%s", err, compareUsage)
	}
	if *out == "" {
		return usagef("--out is required: the plots' path prefix, such as docs/loadtest/s22-burst\n%s", compareUsage)
	}
	if fs.NArg() < 2 && !(fs.NArg() == 1 && reads.IsHostileReport(fs.Arg(0))) {
		return usagef("compare wants two or more run directories (or one hostile run), got %d\n%s", fs.NArg(), compareUsage)
	}
	files, err := compareRuns(fs.Args(), *out)
	if err != nil {
		return err
	}
	for _, f := range files {
		fmt.Fprintln(env.Stdout, f)
	}
	return nil
}

// compareRuns draws the runs in dirs side by side: payment runs with
// report.WriteComparison, read runs with reads.WriteComparison, hostile
// runs with reads.WriteHostileComparison; runs of two kinds cannot be
// compared.
func compareRuns(dirs []string, prefix string) ([]string, error) {
	var payments []*report.Report
	var readRuns []*reads.Report
	var hostile []*reads.HostileReport
	var hostileNames []string
	for _, dir := range dirs {
		if r, err := reads.ReadHostileReport(dir); err == nil {
			hostile = append(hostile, r)
			hostileNames = append(hostileNames, filepath.Base(filepath.Clean(dir)))
			continue
		}
		if r, err := reads.ReadReport(dir); err == nil {
			readRuns = append(readRuns, r)
			continue
		}
		r, err := report.Read(filepath.Join(dir, "results.json"))
		if err != nil {
			return nil, err
		}
		payments = append(payments, r)
	}
	kinds := 0
	for _, n := range []int{len(payments), len(readRuns), len(hostile)} {
		if n > 0 {
			kinds++
		}
	}
	switch {
	case kinds > 1:
		return nil, errors.New("the runs mix payment, read and hostile runs: compare runs of one scenario")
	case len(hostile) > 0:
		return reads.WriteHostileComparison(hostile, hostileNames, prefix)
	case len(readRuns) > 0:
		return reads.WriteComparison(readRuns, prefix)
	}
	return report.WriteComparison(payments, prefix)
}

func printRunUsage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprintln(w, "usage: loadtest run --scenario S [--target pipeline|legacy] [flags]")
	fmt.Fprintln(w, "  Runs scenario S (see `loadtest scenarios`) against the target, open model, then checks the money")
	fmt.Fprintln(w, "  (lost, paid twice, stuck, balance mismatch) and writes results.json, summary.md and PNG plots.")
	fmt.Fprintln(w, "  The users must be seeded: financectl seed --demo && financectl seed --users N --start-id S (pipeline),")
	fmt.Fprintln(w, "  legacy seed --users N --start-id S (as-is service).")
	fmt.Fprintln(w, "flags:")
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
	fmt.Fprintln(w, "environment: AUTH_JWT_SECRET (default: the dev secret), DATABASE_URL (pipeline), LEGACY_DATABASE_URL, PROCESSOR_URL")
}

// durationString formats d without trailing zero units.
func durationString(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
