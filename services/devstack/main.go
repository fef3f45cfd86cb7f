// Command devstack runs the whole Finance Service pipeline on one machine:
// PostgreSQL (found or started), a kfake broker, the processor simulator and
// every service as its own supervised process. It is what `make run` starts.
//
//	devstack run               start everything; Ctrl-C stops everything
//	devstack chaos [flags]     start everything, send payments while killing
//	                           services and injecting faults, then check the
//	                           money; exit 1 on any violation (make chaos)
//	devstack ensure-postgres   print the URL of a reachable PostgreSQL server,
//	                           starting a private one when none runs
//	devstack stop-postgres     stop the private server, if one runs
package main

import (
	"context"
	"io"

	"github.com/finsvc/finance/pkg/entry"
	"github.com/finsvc/finance/services/devstack/internal/chaos"
	"github.com/finsvc/finance/services/devstack/internal/stack"
)

func main() { entry.Main("devstack", run) }

// run runs one subcommand: chaos, or one of the stack's.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "chaos" {
		return chaos.Command(ctx, args[1:], getenv, stdout, stderr)
	}
	return stack.Command(ctx, args, getenv, stdout, stderr)
}
