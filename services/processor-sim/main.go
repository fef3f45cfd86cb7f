// Command processor-sim simulates the external payment processor over HTTP:
// the as-is API and the proposed one (idempotency keys, lookup by key, 429 +
// Retry-After), with a rate limit, latency and injected faults, and a record
// of every payment it executed. See README.md.
package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Getenv, os.Stdout); err != nil {
		slog.New(slog.NewJSONHandler(os.Stderr, nil)).Error("processor-sim failed", "service", "processor-sim", "err", err)
		stop()
		os.Exit(1)
	}
}
