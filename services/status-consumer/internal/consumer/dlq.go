package consumer

// The dead-letter path: which outcomes can never apply, and publishing them
// to payments.outcomes.dlq before their offsets are committed.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/finsvc/finance/pkg/dlq"
	"github.com/finsvc/finance/pkg/kafka"
	"github.com/finsvc/finance/pkg/ledger"
	"github.com/finsvc/finance/pkg/payment"
	"github.com/finsvc/finance/pkg/postgres"
)

// Reasons an outcome is dead-lettered without being applied (label
// "reason", and the dlq-reason header).
const (
	rejectUndecodable    = "undecodable"
	rejectInvalid        = "invalid"
	rejectUnknownPayment = "unknown_payment"
	rejectUserMismatch   = "user_mismatch"
	// rejectConstraint: PostgreSQL refused the change with an integrity
	// constraint violation (SQLSTATE class 23): a CHECK or foreign key at
	// once, any other (unique, not null, exclusion, ...) once it recurred on
	// recurAttempts attempts in a row.
	rejectConstraint = "constraint"
	// rejectDataException: PostgreSQL refused the change with a data
	// exception (SQLSTATE class 22, e.g. bigint out of range) on
	// recurAttempts attempts in a row.
	rejectDataException = "data_exception"
	// rejectConflict: the outcome contradicts the payment's final status
	// (succeeded after failed, failed after succeeded). Nothing changed; it
	// is recorded in outcome_conflicts for verify.
	rejectConflict = "conflict"
	// rejectStale: the outcome names a payment id that this database holds
	// under another uid, or carries no uid: it was made for another
	// database (one restored from a backup since) and is never applied.
	rejectStale = "stale"
)

// recurAttempts is how many attempts in a row must fail with a data
// exception or an integrity constraint violation (SQLSTATE class 22 or 23)
// before the error counts as permanent. Such errors refuse the data itself
// and come back every time; a few attempts still let one that a concurrent
// writer caused (a unique violation, say) go away.
const recurAttempts = 3

// recurringError is a class 22 or 23 PostgreSQL error that came back on
// recurAttempts attempts in a row: retrying will not fix it.
type recurringError struct {
	err      error
	attempts int
}

func (e *recurringError) Error() string {
	return fmt.Sprintf("%v (on %d attempts in a row)", e.err, e.attempts)
}

func (e *recurringError) Unwrap() error { return e.err }

// permanentReason returns the rejection reason of an error that retrying
// cannot fix, or "" for any other error.
func permanentReason(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ledger.ErrPaymentNotFound):
		return rejectUnknownPayment
	case errors.Is(err, ledger.ErrStale):
		return rejectStale
	case errors.Is(err, ledger.ErrUserMismatch):
		return rejectUserMismatch
	case postgres.IsCheckViolation(err), postgres.IsForeignKeyViolation(err):
		return rejectConstraint
	}
	// Other class 22 and 23 errors only once they recurred (see apply).
	var re *recurringError
	if errors.As(err, &re) {
		if postgres.Class(re.err) == postgres.ClassDataException {
			return rejectDataException
		}
		return rejectConstraint
	}
	return ""
}

// refusedByPostgres reports whether reason says PostgreSQL refused the
// change, for a payment that exists and is this user's.
func refusedByPostgres(reason string) bool {
	return reason == rejectConstraint || reason == rejectDataException
}

// deadLetter publishes an outcome that can never apply to
// payments.outcomes.dlq, retrying like any Kafka write, and returns nil once
// the broker has it: only then may the record's offset be committed. If the
// publish keeps failing it returns the error, and the record is deferred
// (fetched and tried again), never dropped.
func (c *Consumer) deadLetter(ctx context.Context, rec *kgo.Record, o Outcome, reason string, cause error,
	attempts int, firstSeen time.Time) error {
	l := dlq.Letter{
		Reason:    reason,
		Err:       cause,
		Attempts:  attempts,
		FirstSeen: firstSeen,
		Source:    Group,
		PaymentID: o.PaymentID,
		UserID:    o.UserID,
	}
	err := c.retry(ctx, "dlq", func(ctx context.Context) error {
		return dlq.Publish(ctx, c.cl, rec, l)
	})
	if err != nil {
		c.m.deferred.WithLabelValues("dlq").Inc()
		c.logger.ErrorContext(ctx, "dead-letter outcome: giving up for now, the record will be fetched again",
			"reason", reason, "payment_id", o.PaymentID, "user_id", o.UserID, "topic", rec.Topic, "partition", rec.Partition,
			"offset", rec.Offset, "err", err)
		return err
	}
	c.m.rejected.WithLabelValues(reason).Inc()
	c.logger.ErrorContext(ctx, "outcome dead-lettered", "reason", reason, "payment_id", o.PaymentID, "user_id", o.UserID,
		"topic", rec.Topic, "partition", rec.Partition, "offset", rec.Offset,
		"dlq_topic", kafka.DLQTopic(rec.Topic), "err", cause)
	return nil
}

// conflict dead-letters an outcome that contradicts its payment's final
// status from (applyOutcome recorded it in outcome_conflicts and changed
// nothing else) and counts it. It returns an error, like deadLetter, only
// when the dead letter could not be published.
func (c *Consumer) conflict(ctx context.Context, rec *kgo.Record, o Outcome, from payment.Status,
	attempts int, firstSeen time.Time) error {
	cause := fmt.Errorf("outcome %s contradicts payment %d's final status %s: ledger left as it is, "+
		"recorded in outcome_conflicts; reconcile the payment with the processor's statement", o.Status, o.PaymentID, from)
	if err := c.deadLetter(ctx, rec, o, rejectConflict, cause, attempts, firstSeen); err != nil {
		return err
	}
	c.m.conflicts.WithLabelValues(string(from), string(o.Status)).Inc()
	return nil
}
