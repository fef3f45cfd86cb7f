package dispatcher

// What a record produces: its outcome (and the early PROCESSING one), its
// dead letter, and the mapping of a processor result to a published status.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/trace"

	"github.com/finsvc/finance/pkg/dlq"
	"github.com/finsvc/finance/pkg/kafka"
	"github.com/finsvc/finance/pkg/payment"
	"github.com/finsvc/finance/pkg/wire"
)

// result is what dispatching one record produces in the transaction: an
// outcome, a dead letter of the record, or both (an unknown outcome).
type result struct {
	outcome *wire.Outcome
	letter  *dlq.Letter
	// trace is the span that dispatched the record: the outcome record is
	// produced as its child, so the payment's trace goes on in
	// payments.outcomes.
	trace trace.SpanContext
}

// produce adds a record's outcome and dead letter to the open transaction,
// so both commit or abort with the offsets past the record; txnMu is
// read-held and d.mu held.
func (d *Dispatcher) produce(rec *kgo.Record, res *result) {
	if out := res.outcome; out != nil {
		d.produceOutcome(out, res.trace)
	}
	if l := res.letter; l != nil {
		d.st.lettered[l.Reason]++
		// Never cancelled: the flush before the commit bounds the wait.
		d.sess.Produce(context.Background(), dlq.Record(rec, *l), func(_ *kgo.Record, err error) {
			if err != nil {
				d.mu.Lock()
				d.st.produceErr = errors.Join(d.st.produceErr, fmt.Errorf("dead-letter %s/%d/%d: %w", rec.Topic, rec.Partition, rec.Offset, err))
				d.mu.Unlock()
			}
		})
	}
}

// produceOutcome adds an outcome to the open transaction, as a child of
// parent (the dispatch's span; none: the record starts its own trace).
func (d *Dispatcher) produceOutcome(out *wire.Outcome, parent trace.SpanContext) {
	val, err := wire.EncodeOutcome(*out)
	if err != nil {
		d.st.produceErr = errors.Join(d.st.produceErr, err)
		return
	}
	d.st.produced[out.Status]++
	select { // tell the committer (MinCommitInterval)
	case d.outcomeReady <- struct{}{}:
	default:
	}
	// Never cancelled: the flush before the commit bounds the wait.
	rec := &kgo.Record{Topic: kafka.TopicOutcomes, Key: kafka.UserKey(out.UserID), Value: val}
	if parent.IsValid() {
		rec.Context = trace.ContextWithSpanContext(context.Background(), parent)
	}
	d.sess.Produce(context.Background(), rec,
		func(_ *kgo.Record, err error) {
			if err != nil {
				d.mu.Lock()
				d.st.produceErr = errors.Join(d.st.produceErr, fmt.Errorf("produce outcome of payment %d: %w", out.PaymentID, err))
				d.mu.Unlock()
			}
		})
}

// publishProcessing tells clients early that the payment is being sent. It
// is best effort and outside the transaction: the status consumer ignores it
// when it arrives after the final outcome, and a redelivery repeats it.
func (d *Dispatcher) publishProcessing(ctx context.Context, log *slog.Logger, req wire.Requested) {
	val, err := wire.EncodeOutcome(wire.Outcome{
		PaymentID:  req.PaymentID,
		PaymentUID: req.PaymentUID,
		UserID:     req.UserID,
		Status:     payment.StatusProcessing,
		DecidedAt:  time.Now(),
	})
	if err != nil {
		log.ErrorContext(ctx, "encode processing outcome", "err", err)
		return
	}
	// Not bound to ctx, the dispatch's context, which ends with the
	// dispatch: a record still buffered then would be dropped. Closing the
	// early client bounds it instead.
	d.early.Produce(context.WithoutCancel(ctx), &kgo.Record{Topic: kafka.TopicOutcomes, Key: kafka.UserKey(req.UserID), Value: val},
		func(_ *kgo.Record, err error) {
			if err != nil {
				d.m.processingDropped.Inc()
				log.WarnContext(ctx, "processing outcome not published", "err", err)
			}
		})
}

// deadLetter is the result of a record that can never be dispatched: its
// dead letter, produced in the transaction that commits past the record, so
// the record is never dropped and never blocks its partition.
func (d *Dispatcher) deadLetter(ctx context.Context, it *item, reason string, err error, paymentID, userID int64) *result {
	r := it.rec
	d.log.ErrorContext(ctx, "dead-lettering invalid payments.requested record", "reason", reason,
		"topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "key", string(r.Key),
		"payment_id", paymentID, "user_id", userID, "dlq_topic", kafka.DLQTopic(r.Topic), "err", err)
	return &result{letter: &dlq.Letter{
		Reason:    reason,
		Err:       err,
		Attempts:  1,
		FirstSeen: it.fetched,
		Source:    Source,
		PaymentID: paymentID,
		UserID:    userID,
	}}
}

// outcomeStatus is the final status a processor result is published with:
// anything but succeeded or failed is unknown, for the reconciler. It is
// also the label of dispatcher_outcomes_total.
func outcomeStatus(s payment.Status) payment.Status {
	switch s {
	case payment.StatusSucceeded, payment.StatusFailed:
		return s
	default:
		return payment.StatusUnknown
	}
}
