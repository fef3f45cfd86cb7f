package consumer

// The batch path: the outcomes of one poll are applied in one PostgreSQL
// transaction (ledger.ApplyAll), their events produced together and
// flushed once, and only then are the offsets committed. A record that can
// never apply goes alone to the DLQ and its batch-mates go on. When the
// transaction itself fails (PostgreSQL down, a deadlock, a change it
// refuses), nothing of it was written and the poll is processed record by
// record instead (handle), with that path's retries and dead letters.

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/trace"

	"github.com/finsvc/finance/pkg/kafka"
	"github.com/finsvc/finance/pkg/ledger"
	"github.com/finsvc/finance/pkg/postgres"
	"github.com/finsvc/finance/pkg/wire"
)

// item is one record of a batch.
type item struct {
	rec *kgo.Record
	// span is the record's apply span (spanApply): child of its receive
	// span, linked to the batch's, from the batch's start to its event's
	// flush. Its logs and its event carry the payment's trace.
	span trace.Span
	o    Outcome
	// reason and cause, when reason is set, dead-letter the record unapplied.
	reason string
	cause  error
	// tx is the record's index in the batch's transitions (when reason is "").
	tx  int
	res ledger.Result
}

// processBatch processes the records of parts on the batch path. It
// returns, per partition, how many of its records are finished (applied
// and emitted, or dead-lettered), and false when the batch's transaction
// failed: then nothing was applied, dead-lettered or emitted.
func (c *Consumer) processBatch(ctx context.Context, parts []kgo.FetchTopicPartition) ([]int, bool) {
	if c.recordByRecord {
		return nil, false
	}
	firstSeen := time.Now()
	items := make([][]item, len(parts))
	var ts []ledger.Transition

	// The batch's span links every record's trace (they are many
	// payments' traces, so none is its parent); each record's own apply
	// span continues its payment's trace and links back to the batch.
	var links []trace.Link
	for _, p := range parts {
		for _, rec := range p.Records {
			if sc := trace.SpanContextFromContext(rec.Context); sc.IsSampled() {
				links = append(links, trace.Link{SpanContext: sc})
			}
		}
	}
	ctx, batchSpan := c.tracer.Start(ctx, spanApplyBatch, trace.WithLinks(links...))
	defer batchSpan.End()
	batchLink := trace.WithLinks(trace.Link{SpanContext: batchSpan.SpanContext()})
	start := trace.WithTimestamp(firstSeen)
	defer func() {
		for i := range items {
			for j := range items[i] {
				items[i][j].span.End()
			}
		}
	}()

	for i, p := range parts {
		items[i] = make([]item, len(p.Records))
		for j, rec := range p.Records {
			it := item{rec: rec}
			_, it.span = c.tracer.Start(recordContext(ctx, rec), spanApply, start, batchLink)
			it.o, it.reason, it.cause = parse(rec)
			if it.reason == "" {
				it.tx = len(ts)
				ts = append(ts, transitionOf(it.o))
			}
			items[i][j] = it
		}
	}

	if len(ts) > 0 {
		start := time.Now()
		results, err := c.applyBatch(ctx, ts)
		c.m.batchDuration.Observe(time.Since(start).Seconds())
		if err != nil {
			c.m.errors.WithLabelValues("apply").Inc()
			c.logger.WarnContext(ctx, "apply batch failed: applying its outcomes one by one",
				"outcomes", len(ts), "err", err)
			return nil, false
		}
		c.m.batchSize.Observe(float64(len(ts)))
		for i := range items {
			for j := range items[i] {
				if it := &items[i][j]; it.reason == "" {
					it.res = results[it.tx]
				}
			}
		}
	}

	// Dead letters and conflicts, partition by partition, in order: a
	// partition stops at a record whose dead letter Kafka did not take.
	finished := make([]int, len(parts))
	var emits []emit
	for i := range items {
		finished[i] = len(items[i])
		for j := range items[i] {
			it := &items[i][j]
			ev, err := c.settle(trace.ContextWithSpan(ctx, it.span), it, firstSeen)
			if err != nil {
				finished[i] = j
				break
			}
			if ev != nil {
				emits = append(emits, emit{part: i, index: j, ev: ev, replay: it.res.Change != ledger.Applied, span: it.span})
			}
		}
	}

	// The events, produced together and flushed once; a partition stops at
	// its first record whose event Kafka did not take.
	for _, e := range c.emitAll(ctx, emits) {
		if e.err != nil && e.index < finished[e.part] {
			finished[e.part] = e.index
		}
	}
	return finished, true
}

// applyBatch applies ts in one transaction, recording the conflicts among
// them in outcome_conflicts, and returns ApplyAll's results.
func (c *Consumer) applyBatch(ctx context.Context, ts []ledger.Transition) ([]ledger.Result, error) {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.AttemptTimeout)
	defer cancel()
	var results []ledger.Result
	err := postgres.InTx(actx, c.db, func(tx pgx.Tx) error {
		var err error
		results, err = ledger.ApplyAll(actx, tx, ts)
		if err != nil {
			return err
		}
		for i, r := range results {
			if r.Err == nil && r.Change == ledger.OutOfOrder && conflicting(r.From, ts[i].To) {
				if err := insertConflict(actx, tx, ts[i], r.From); err != nil {
					return err
				}
			}
		}
		return nil
	})
	return results, err
}

// settle dead-letters it if it can never apply, or counts and logs what
// applying it did, and returns the event to emit for it, if any. An error
// means a dead letter Kafka did not take: the record is not finished.
func (c *Consumer) settle(ctx context.Context, it *item, firstSeen time.Time) (*ledger.Event, error) {
	if it.reason != "" {
		return nil, c.deadLetter(ctx, it.rec, it.o, it.reason, it.cause, 1, firstSeen)
	}
	if err := it.res.Err; err != nil {
		return nil, c.deadLetter(ctx, it.rec, it.o, permanentReason(err), err, 1, firstSeen)
	}
	if err := c.applied(ctx, it.rec, it.o, it.res, 1, firstSeen); err != nil {
		return nil, err
	}
	return it.res.Event, nil
}

// spanApplyBatch names the span of one batch transaction.
const spanApplyBatch = "apply outcomes batch"

// emit is one event to produce, of record index of partition part.
type emit struct {
	part, index int
	ev          *ledger.Event
	span        trace.Span // the record's apply span, the event's parent
	replay      bool       // ev was rebuilt for a redelivered outcome
	err         error
}

// emitAll produces the events of emits at once, flushes, and retries those
// that failed one by one (c.retry). Each emit's err says whether its event
// is in Kafka at the end.
func (c *Consumer) emitAll(ctx context.Context, emits []emit) []emit {
	if len(emits) == 0 {
		return emits
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.AttemptTimeout)
	defer cancel()
	payloads := make([][]byte, len(emits))
	var wg sync.WaitGroup
	for i := range emits {
		payload, err := wire.EncodeEvent(*emits[i].ev)
		if err != nil {
			emits[i].err = err
			continue
		}
		payloads[i] = payload
		wg.Add(1)
		rec := &kgo.Record{Topic: kafka.TopicEvents, Key: kafka.UserKey(emits[i].ev.UserID), Value: payload,
			Context: trace.ContextWithSpan(actx, emits[i].span)}
		c.cl.Produce(actx, rec, func(_ *kgo.Record, err error) {
			emits[i].err = err
			wg.Done()
		})
	}
	if err := c.cl.Flush(actx); err != nil {
		c.logger.WarnContext(ctx, "flush events", "events", len(emits), "err", err)
	}
	wg.Wait()

	for i := range emits {
		e := &emits[i]
		if e.err != nil && payloads[i] != nil {
			c.m.errors.WithLabelValues("emit").Inc()
			e.err = c.produceEvent(trace.ContextWithSpan(ctx, e.span), e.ev, payloads[i])
		}
		if e.err != nil {
			c.m.deferred.WithLabelValues("emit").Inc()
			c.logger.ErrorContext(trace.ContextWithSpan(ctx, e.span), "emit payment event: giving up for now, the outcome will be fetched again",
				"payment_id", e.ev.PaymentID, "user_id", e.ev.UserID, "event_id", e.ev.ID(), "err", e.err)
			continue
		}
		c.m.events.WithLabelValues(strconv.FormatBool(e.replay)).Inc()
	}
	return emits
}
