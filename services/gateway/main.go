// Command gateway is the Finance Service's HTTP API: it serves wallet feeds
// and accepts payments, which it records in PostgreSQL together with an
// outbox record that the rest of the pipeline picks up. See README.md.
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
	err := run(ctx, os.Getenv, os.Stdout)
	stop()
	if err != nil {
		slog.New(slog.NewJSONHandler(os.Stdout, nil)).With("service", "gateway").Error("gateway failed", "err", err)
		os.Exit(1)
	}
}
