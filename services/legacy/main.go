// Command legacy is the Finance Service as it stands today, built faithfully
// as the baseline of the load tests: one process, two tables, and a POST
// /payment that calls the processor synchronously inside the request.
//
//	legacy [serve]    serve POST /payment and GET /payment_feed?user_id=
//	legacy migrate    create the database and its two tables
//	legacy seed       write starting balances
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/finsvc/finance/services/legacy/internal/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := app.Run(ctx, os.Args[1:], os.Getenv, os.Stdout, nil)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "legacy:", err)
		var ue *app.UsageError
		if errors.As(err, &ue) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}
