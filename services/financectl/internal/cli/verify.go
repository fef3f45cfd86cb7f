package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/finsvc/finance/pkg/verify"
)

// errViolations makes financectl verify exit 1 after printing its report.
var errViolations = errors.New("invariants violated")

// processorFlags are the flags that say where the processor's records are.
type processorFlags struct {
	url          string
	statementURL string
	noStatement  bool
}

func (p *processorFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&p.url, "processor-url", "http://127.0.0.1:8090", "the processor (processor-sim) base `URL`")
	fs.StringVar(&p.statementURL, "statement-url", "", "the processor's statement of executions `URL` (default: <processor-url>/sim/executions)")
	fs.BoolVar(&p.noStatement, "no-statement", false, "do not read the processor's statement: check the ledger alone")
}

func (p *processorFlags) statement() verify.Statement {
	if p.noStatement {
		return nil
	}
	if p.statementURL != "" {
		return &verify.HTTPStatement{URL: p.statementURL}
	}
	return verify.NewHTTPStatement(p.url)
}

func verifyCommand() *command {
	var (
		cfg    = verify.DefaultConfig()
		proc   processorFlags
		asJSON bool
	)
	return &command{
		name: "verify",
		args: "[--no-statement] [--json] [bounds]",
		summary: "check the ledger's invariants in DATABASE_URL, and against the processor's statement; " +
			"exit 1 when any is violated",
		flags: func(*env) *flag.FlagSet {
			fs := newFlagSet("verify")
			proc.register(fs)
			fs.DurationVar(&cfg.StuckAfter, "stuck-after", cfg.StuckAfter,
				"liveness: how long after its acceptance a payment may stay accepted, processing or unknown (stuck_nonfinal; 0 disables)")
			fs.DurationVar(&cfg.InFlightBound, "in-flight-bound", cfg.InFlightBound, "how long a payment may stay accepted or processing")
			fs.DurationVar(&cfg.UnknownBound, "unknown-bound", cfg.UnknownBound, "how long a payment may stay unknown")
			fs.DurationVar(&cfg.ExecutionBound, "execution-bound", cfg.ExecutionBound, "how long an executed payment may take to succeed here")
			fs.IntVar(&cfg.MaxExamples, "examples", cfg.MaxExamples, "examples shown per violated invariant")
			fs.BoolVar(&asJSON, "json", false, "print the report as JSON")
			return fs
		},
		run: func(ctx context.Context, e *env, fs *flag.FlagSet) error {
			if err := noArgs(fs); err != nil {
				return err
			}
			if cfg.StuckAfter < 0 || cfg.InFlightBound < 0 || cfg.UnknownBound < 0 || cfg.ExecutionBound < 0 {
				return usagef("bounds must not be negative")
			}
			if cfg.MaxExamples < 1 {
				return usagef("--examples %d: must be at least 1", cfg.MaxExamples)
			}
			pool, err := connect(ctx, e.cfg.Postgres)
			if err != nil {
				return err
			}
			defer pool.Close()
			rep, err := verify.New(pool, proc.statement(), cfg).Check(ctx)
			if err != nil {
				return err
			}
			if err := writeReport(e.stdout, asJSON, rep, rep.WriteText); err != nil {
				return err
			}
			if f, ok := rep.Finding(verify.SucceededNotExecuted); ok && f.Count > 0 && !asJSON {
				fmt.Fprint(e.stdout, simForgotHint)
			}
			if !rep.OK() {
				return fmt.Errorf("%w: %d violations", errViolations, rep.Violations())
			}
			return nil
		},
	}
}

// simForgotHint follows a report with succeeded_not_executed: against
// processor-sim, the usual cause is a record lost while the database was kept.
const simForgotHint = `
succeeded_not_executed: if the processor is processor-sim, it probably lost its
record of executions while this database kept its payments: it ran without
SIM_DATA_FILE, or its file was deleted (make run keeps it in
.run/processor-sim.jsonl). To start over, drop the database as well; see
services/devstack/README.md.
`

// writeReport prints v as indented JSON or through text.
func writeReport(w io.Writer, asJSON bool, v any, text func(io.Writer) error) error {
	if !asJSON {
		return text(w)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// positive fails with a usage error unless d > 0.
func positive(name string, d time.Duration) error {
	if d <= 0 {
		return usagef("--%s %s: must be positive", name, d)
	}
	return nil
}
