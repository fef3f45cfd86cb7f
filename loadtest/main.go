// Command loadtest is the Finance Service's load generator. It drives the
// pipeline (the gateway) or the as-is service with an open-model workload
// of authenticated virtual users, samples the processor and the backlog,
// checks the money afterwards (lost, paid twice, stuck, balance mismatch)
// and writes results.json, a Markdown summary and PNG plots.
//
//	loadtest run --scenario burst --target pipeline
//	loadtest scenarios
//	loadtest table loadtest/out/*/results.json
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/finsvc/finance/loadtest/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], cli.Env{Getenv: os.Getenv, Stdout: os.Stdout, Stderr: os.Stderr})
	stop()
	os.Exit(code)
}
