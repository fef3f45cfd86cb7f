// Command legacy is the Finance Service as it stands today, built faithfully
// as the baseline of the load tests: one process, two tables, and a POST
// /payment that calls the processor synchronously inside the request.
//
//	legacy [serve]    serve POST /payment and GET /payment_feed?user_id=
//	legacy migrate    create the database and its two tables
//	legacy seed       write starting balances
package main

import (
	"github.com/finsvc/finance/pkg/entry"
	"github.com/finsvc/finance/services/legacy/internal/app"
)

func main() { entry.Main("legacy", app.Run) }
