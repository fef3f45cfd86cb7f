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
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/finsvc/finance/services/devstack/internal/chaos"
	"github.com/finsvc/finance/services/devstack/internal/stack"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	if len(os.Args) > 1 && os.Args[1] == "chaos" {
		err = chaos.Main(ctx, os.Args[2:], os.Getenv, os.Stdout, os.Stderr)
	} else {
		err = stack.Main(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "devstack:", err)
		os.Exit(1)
	}
}
