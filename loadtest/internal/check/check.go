// Package check is the invariant checker that runs after every load test.
// It compares three views of the same money: what the client was told,
// what the system under test recorded (its PostgreSQL database), and what
// the processor actually executed (the simulator's execution record, the
// ground truth, since the real processor has no sandbox).
//
// For the pipeline, the ledger's invariants and the ledger against the
// processor are pkg/verify's, the checker financectl verify and the chaos
// run use too; this package adds only what the clients were told and the
// run's own deadline. The as-is service has another schema and no
// ledger; its checks are here.
//
// The four counts, for both targets:
//
//   - Lost: money the processor moved that the system does not show, or a
//     payment the client was told was accepted that the system does not
//     have: accepted but missing, executed but recorded as failed (or not
//     recorded at all), or an execution no payment accounts for.
//   - PaidTwice: payments the processor executed more than once.
//   - Stuck: accepted payments still not final (accepted, processing,
//     unknown) when the drain deadline passed.
//   - BalanceMismatch: for the pipeline, any of verify's ledger
//     invariants violated (a wallet's balance or held amount against its
//     entries and holds, balance - held < 0, an entry against its payment)
//     or a succeeded payment the processor did not execute as recorded;
//     for the as-is service, users whose run's payments sum to another
//     amount than the money the processor moved.
//
// Any non-zero count fails the run.
package check

import (
	"fmt"

	"github.com/finsvc/finance/loadtest/internal/target"
	"github.com/finsvc/finance/pkg/verify"
)

// Write is one payment request as the client saw it.
type Write struct {
	UserID    int64
	Amount    int64
	Key       string
	Code      int
	Class     target.Class
	PaymentID int64
}

// Report is the checker's result.
type Report struct {
	Target string `json:"target"`

	Lost            int64 `json:"lost"`
	PaidTwice       int64 `json:"paid_twice"`
	Stuck           int64 `json:"stuck"`
	BalanceMismatch int64 `json:"balance_mismatch"`

	// What the client was told.
	Requests   int64 `json:"requests"`
	ToldOK     int64 `json:"told_ok"`
	ToldFailed int64 `json:"told_failed"`
	// Unresolved are requests whose outcome the client cannot know: no
	// answer, a dropped connection, or a 5xx other than "not executed".
	Unresolved int64 `json:"unresolved"`

	// What the processor executed for the run's users.
	Executions int64 `json:"executions"`
	// RecordedNotExecuted are payments the system shows as succeeded that
	// the processor never executed (part of the balance mismatch; for the
	// pipeline, verify's succeeded_not_executed).
	RecordedNotExecuted int64 `json:"recorded_not_executed"`
	// OrphanExecutions are executions no payment accounts for (part of
	// Lost; for the pipeline, verify's execution_without_payment and
	// unmatched_executions).
	OrphanExecutions int64 `json:"orphan_executions"`

	// Pipeline: the payments in the database, by final status.
	InDatabase int64            `json:"in_database,omitempty"`
	ByStatus   map[string]int64 `json:"by_status,omitempty"`
	// AcceptedMissing are 2xx answers whose payment is not in the database.
	AcceptedMissing int64 `json:"accepted_missing,omitempty"`
	// ExecutedButFailed are payments the processor executed that the
	// system recorded as failed.
	ExecutedButFailed int64 `json:"executed_but_failed,omitempty"`
	// ClientErrorsInDatabase are requests the client got no 2xx for that
	// the pipeline nevertheless holds (found by their Idempotency-Key): a
	// retry with the same key would have returned them.
	ClientErrorsInDatabase int64 `json:"client_errors_in_database,omitempty"`

	// As-is: what it got wrong.
	// ExecutedToldFailed are payments the processor executed while the
	// client was told the payment failed.
	ExecutedToldFailed int64 `json:"executed_told_failed,omitempty"`
	// UnresolvedExecuted are the unresolved requests the processor in fact
	// executed.
	UnresolvedExecuted int64 `json:"unresolved_executed,omitempty"`
	// ToldOKNotExecuted are 2xx answers the processor has no execution for.
	ToldOKNotExecuted int64 `json:"told_ok_not_executed,omitempty"`
	// ExecutedNotRecorded are executions the as-is database has no row for.
	ExecutedNotRecorded int64 `json:"executed_not_recorded,omitempty"`

	// Ledger is pkg/verify's report (pipeline only).
	Ledger *verify.Report `json:"ledger,omitempty"`

	// Examples are the first few problems, for a human to follow up.
	Examples []string `json:"examples,omitempty"`
	// Notes say what a count means for this target.
	Notes []string `json:"notes,omitempty"`

	perKind map[string]int
}

// examplesPerKind bounds Report.Examples per kind of problem, so every
// kind shows.
const examplesPerKind = 5

// Failed reports whether any invariant count is non-zero.
func (r Report) Failed() bool {
	return r.Lost != 0 || r.PaidTwice != 0 || r.Stuck != 0 || r.BalanceMismatch != 0
}

// example records a problem of a kind, up to examplesPerKind of each.
func (r *Report) example(kind, format string, args ...any) {
	if r.perKind == nil {
		r.perKind = map[string]int{}
	}
	if r.perKind[kind] < examplesPerKind {
		r.perKind[kind]++
		r.Examples = append(r.Examples, fmt.Sprintf(format, args...))
	}
}

// userAmount identifies a payment of a run where the processor's as-is API
// gives no key: the load generator gives each of a user's payments in a run
// a different amount, so (user, amount) names one request.
type userAmount struct {
	user, amount int64
}

// unresolved reports whether the client cannot know the outcome of a
// request: no answer, a broken connection, or a 5xx that does not promise
// the payment was not executed (503/429 do).
func unresolved(w Write) bool {
	switch w.Class {
	case target.Timeout, target.NetError, target.ServerError:
		return true
	}
	return false
}
