// Command financectl is the operator CLI of the Finance Service: it creates and
// migrates the database, seeds demo and bulk data, mints bearer tokens,
// creates the Kafka topics of the pipeline, replays dead letters, checks the
// ledger (verify), reconciles it with the processor (reconcile), and repairs
// it after a database restore (after-restore, recover). Run `financectl help`
// for usage.
package main

import (
	"github.com/finsvc/finance/pkg/entry"
	"github.com/finsvc/finance/services/financectl/internal/cli"
)

func main() { entry.Main("financectl", cli.Run) }
