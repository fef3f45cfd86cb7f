// Command devkafka is the development Kafka broker of the Finance Service: a
// single-broker, Kafka-protocol server (franz-go's kfake) that persists to a
// data directory. Stop it only with SIGTERM or SIGINT; see README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/finsvc/finance/services/devkafka/internal/broker"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := broker.Run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	var usage *broker.UsageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return
	case errors.As(err, &usage):
		fmt.Fprintf(os.Stderr, "devkafka: %v\n%s", err, usage.Usage)
		os.Exit(2)
	default:
		slog.New(slog.NewJSONHandler(os.Stderr, nil)).Error("devkafka failed", "service", "devkafka", "err", err)
		os.Exit(1)
	}
}
