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
)

// Exit codes of Run.
const (
	ExitOK    = 0
	ExitError = 1
	ExitUsage = 2
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

// usageError is a wrong invocation: exit 2 with the command's usage.
type usageError struct {
	msg string
}

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

func commands() []*command {
	return []*command{
		afterRestoreCommand(),
		createdbCommand(),
		dlqCommand(),
		migrateCommand(),
		reconcileCommand(),
		recoverCommand(),
		seedCommand(),
		tokenCommand(),
		topicsCommand(),
		vacuumCommand(),
		verifyCommand(),
		versionCommand(),
	}
}

// Run runs financectl with args (without the program name), reading the
// environment through getenv, and returns the process exit code.
func Run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	cmds := commands()
	if len(args) == 0 {
		fmt.Fprintln(stderr, "financectl: missing command")
		printUsage(stderr, cmds)
		return ExitUsage
	}
	name, rest := args[0], args[1:]
	switch name {
	case "help", "-h", "-help", "--help":
		return help(rest, cmds, stdout, stderr)
	}
	var cmd *command
	for _, c := range cmds {
		if c.name == name {
			cmd = c
		}
	}
	if cmd == nil {
		fmt.Fprintf(stderr, "financectl: unknown command %q\n", name)
		printUsage(stderr, cmds)
		return ExitUsage
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
			return ExitOK
		}
		fmt.Fprintf(stderr, "financectl %s: %v\n", cmd.name, err)
		printCommandUsage(stderr, cmd, fs)
		return ExitUsage
	}
	if cfgErr != nil {
		fmt.Fprintf(stderr, "financectl %s: bad environment: %s\n", cmd.name, strings.ReplaceAll(cfgErr.Error(), "\n", "; "))
		return ExitUsage
	}
	err := cmd.run(ctx, e, fs)
	var ue *usageError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "financectl %s: %s\n", cmd.name, ue.msg)
		printCommandUsage(stderr, cmd, fs)
		return ExitUsage
	default:
		fmt.Fprintf(stderr, "financectl %s: %v\n", cmd.name, err)
		return ExitError
	}
}

func help(args []string, cmds []*command, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		printUsage(stdout, cmds)
		return ExitOK
	}
	for _, c := range cmds {
		if c.name == args[0] {
			fs := flag.NewFlagSet("financectl "+c.name, flag.ContinueOnError)
			if c.flags != nil {
				fs = c.flags(&env{cfg: defaultConfig(), stdout: io.Discard, stderr: io.Discard})
			}
			printCommandUsage(stdout, c, fs)
			return ExitOK
		}
	}
	fmt.Fprintf(stderr, "financectl help: unknown command %q\n", args[0])
	printUsage(stderr, cmds)
	return ExitUsage
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
	fmt.Fprintln(w, "environment: DATABASE_URL, KAFKA_BROKERS, KAFKA_PARTITIONS, AUTH_JWT_SECRET, FINANCE_DEV_MODE, LOG_LEVEL")
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
