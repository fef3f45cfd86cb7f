// Command gateway is the Finance Service's HTTP API: it serves wallet feeds
// and accepts payments, which it records in PostgreSQL together with an
// outbox record that the rest of the pipeline picks up. See README.md.
package main

import "github.com/finsvc/finance/pkg/entry"

func main() { entry.Main("gateway", run) }
