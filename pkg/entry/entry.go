// Package entry is the one shape of every binary's main function:
//
//	func main() { entry.Main("gateway", run) }
//
//	func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error
//
// run does all the work and is what tests call; Main gives it the process's
// arguments, environment and streams and a context that SIGINT or SIGTERM
// cancels, then turns its error into the exit status.
package entry

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Run is a binary's body.
type Run func(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error

// UsageError is a bad flag, argument or command: the binary exits 2 and
// prints Usage, when set, after the error.
type UsageError struct {
	Err   error
	Usage string
}

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// Usagef returns a UsageError without usage text.
func Usagef(format string, args ...any) error {
	return &UsageError{Err: fmt.Errorf(format, args...)}
}

// Main runs run and exits with its status. It never returns.
func Main(name string, run Run) {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(Exit(name, err, os.Stderr))
}

// Exit writes err to stderr as "name: err" and returns the exit status: 0
// for nil and for -h (flag.ErrHelp, whose usage the flag set printed), 2 for
// a UsageError (with its usage), 1 for any other error.
func Exit(name string, err error, stderr io.Writer) int {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return 0
	}
	fmt.Fprintf(stderr, "%s: %v\n", name, err)
	var usage *UsageError
	if errors.As(err, &usage) {
		if usage.Usage != "" {
			fmt.Fprint(stderr, usage.Usage)
		}
		return 2
	}
	return 1
}
