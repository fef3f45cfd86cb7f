// Package cli parses financectl's command line and runs its subcommands.
//
// Exit codes: 0 success; 1 the work failed (database, Kafka, ...); 2 the
// invocation is wrong (unknown command or flag, missing argument, bad
// environment), reported as one line plus the command's usage on stderr.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/finsvc/finance/pkg/entry"
)

// env is what every subcommand gets: its configuration and its output.
type env struct {
	cfg    config
	stdout io.Writer
	stderr io.Writer
}

// command is one subcommand.
type command struct {
	name    string
	args    string // usage after the name, e.g. "[up|version]"
	summary string
	// flags returns the command's flag set; nil for a command without flags.
	flags func(*env) *flag.FlagSet
	run   func(ctx context.Context, e *env, fs *flag.FlagSet) error
}

// usagef is a wrong invocation: exit 2 with the command's usage.
var usagef = entry.Usagef

func commands() []*command {
	return []*command{
		afterRestoreCommand(),
		createdbCommand(),
		dlqCommand(),
		keysCommand(),
		migrateCommand(),
		reconcileCommand(),
		recoverCommand(),
		seedCommand(),
		tokenCommand(),
		topicsCommand(),
		vacuumCommand(),
		verifyCommand(),
		versionCommand(),
		webhooksCommand(),
	}
}

// Run runs financectl with args (without the program name), reading the
// environment through getenv. It is the binary's body (pkg/entry): a wrong
// invocation is an *entry.UsageError carrying the usage to print (exit 2),
// any other failure exits 1.
func Run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cmds := commands()
	if len(args) == 0 {
		return &entry.UsageError{Err: errors.New("missing command"), Usage: usageText(cmds)}
	}
	name, rest := args[0], args[1:]
	switch name {
	case "help", "-h", "-help", "--help":
		return help(rest, cmds, stdout)
	}
	var cmd *command
	for _, c := range cmds {
		if c.name == name {
			cmd = c
		}
	}
	if cmd == nil {
		return &entry.UsageError{Err: fmt.Errorf("unknown command %q", name), Usage: usageText(cmds)}
	}

	cfg, cfgErr := loadConfig(getenv)
	e := &env{cfg: cfg, stdout: stdout, stderr: stderr}
	fs := flag.NewFlagSet("financectl "+cmd.name, flag.ContinueOnError)
	if cmd.flags != nil {
		fs = cmd.flags(e)
	}
	fs.SetOutput(io.Discard) // we print errors and usage ourselves
	if err := fs.Parse(rest); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printCommandUsage(stdout, cmd, fs)
			return nil
		}
		return &entry.UsageError{Err: fmt.Errorf("%s: %w", cmd.name, err), Usage: commandUsage(cmd, fs)}
	}
	if cfgErr != nil {
		return entry.Usagef("%s: bad environment: %s", cmd.name, strings.ReplaceAll(cfgErr.Error(), "\n", "; "))
	}
	err := cmd.run(ctx, e, fs)
	var ue *entry.UsageError
	if errors.As(err, &ue) && ue.Usage == "" {
		ue.Usage = commandUsage(cmd, fs)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", cmd.name, err)
	}
	return nil
}

func help(args []string, cmds []*command, stdout io.Writer) error {
	if len(args) == 0 {
		printUsage(stdout, cmds)
		return nil
	}
	for _, c := range cmds {
		if c.name == args[0] {
			fs := flag.NewFlagSet("financectl "+c.name, flag.ContinueOnError)
			if c.flags != nil {
				fs = c.flags(&env{cfg: defaultConfig(), stdout: io.Discard, stderr: io.Discard})
			}
			printCommandUsage(stdout, c, fs)
			return nil
		}
	}
	return &entry.UsageError{Err: fmt.Errorf("help: unknown command %q", args[0]), Usage: usageText(cmds)}
}

func usageText(cmds []*command) string {
	var b strings.Builder
	printUsage(&b, cmds)
	return b.String()
}

func commandUsage(c *command, fs *flag.FlagSet) string {
	var b strings.Builder
	printCommandUsage(&b, c, fs)
	return b.String()
}

func printUsage(w io.Writer, cmds []*command) {
	fmt.Fprintln(w, "usage: financectl <command> [flags] [args]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "commands:")
	for _, c := range cmds {
		fmt.Fprintf(w, "  %s\n      %s\n", strings.TrimSpace(c.name+" "+c.args), c.summary)
	}
	fmt.Fprintf(w, "  help [command]\n      show a command's usage and flags\n")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "environment: DATABASE_URL, KAFKA_BROKERS, KAFKA_PARTITIONS, AUTH_JWT_SECRET (dev-mode tokens), FINANCE_DEV_MODE, FINANCE_ACTOR (who the audit names; default cli:<os user>), LOG_LEVEL")
	fmt.Fprintln(w, "exit codes: 0 ok, 1 failed, 2 bad usage")
}

func printCommandUsage(w io.Writer, c *command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "usage: financectl %s\n", strings.TrimSpace(c.name+" "+c.args))
	fmt.Fprintf(w, "  %s\n", c.summary)
	hasFlags := false
	fs.VisitAll(func(*flag.Flag) { hasFlags = true })
	if hasFlags {
		fmt.Fprintln(w, "flags:")
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
}

// newFlagSet returns an empty flag set for cmd.
func newFlagSet(name string) *flag.FlagSet {
	return flag.NewFlagSet("financectl "+name, flag.ContinueOnError)
}

// noArgs fails with a usage error when fs has positional arguments left.
func noArgs(fs *flag.FlagSet) error {
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	return nil
}
