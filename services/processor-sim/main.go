// Command processor-sim simulates the external payment processor over HTTP:
// the as-is API and the proposed one (idempotency keys, lookup by key, 429 +
// Retry-After), with a rate limit, latency and injected faults, and a record
// of every payment it executed. See README.md.
package main

import "github.com/finsvc/finance/pkg/entry"

func main() { entry.Main("processor-sim", run) }
