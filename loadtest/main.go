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
	"github.com/finsvc/finance/loadtest/internal/cli"
	"github.com/finsvc/finance/pkg/entry"
)

func main() { entry.Main("loadtest", cli.Run) }
