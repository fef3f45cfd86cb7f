// Package dispatcher turns payments.requested records into processor calls
// and payments.outcomes records. Each poll is one Kafka transaction: the
// outcomes of the polled records and the consumed offsets commit together or
// not at all. Within a poll, records are grouped by key (the user): one user's
// records run strictly in order, different users run in parallel, bounded by
// a semaphore, and paced by the processor client's shared rate limiter.
package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/semaphore"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/finsvc/finance/pkg/kafka"
	"github.com/finsvc/finance/pkg/payment"
	financev1 "github.com/finsvc/finance/proto/finance/v1"
	"github.com/finsvc/finance/services/dispatcher/internal/processor"
)

// Config tunes a Dispatcher.
type Config struct {
	// MaxInFlight bounds the users whose payments are being dispatched at
	// once, and so the concurrent processor calls of the replica.
	MaxInFlight int
	// MaxPollRecords bounds the records of one poll, and so one transaction.
	MaxPollRecords int
	// Grace bounds how long in-flight work may run after shutdown begins.
	Grace time.Duration
}

// Dispatcher is the consume → call → produce loop of one replica.
type Dispatcher struct {
	sess  *kgo.GroupTransactSession
	early *kgo.Client
	proc  processor.Client
	log   *slog.Logger
	m     *metrics
	cfg   Config
	sem   *semaphore.Weighted
}

// New returns a Dispatcher that consumes and produces through sess (see
// NewSession), publishes early PROCESSING outcomes through the
// non-transactional early client, and calls the processor through proc.
func New(sess *kgo.GroupTransactSession, early *kgo.Client, proc processor.Client, logger *slog.Logger, reg prometheus.Registerer, cfg Config) *Dispatcher {
	cfg.MaxInFlight = max(cfg.MaxInFlight, 1)
	cfg.MaxPollRecords = max(cfg.MaxPollRecords, 1)
	return &Dispatcher{
		sess:  sess,
		early: early,
		proc:  proc,
		log:   logger,
		m:     newMetrics(reg),
		cfg:   cfg,
		sem:   semaphore.NewWeighted(int64(cfg.MaxInFlight)),
	}
}

// Run polls and dispatches until ctx ends. On shutdown it stops polling,
// lets the current poll's calls finish within the grace period, ends the
// transaction and returns nil; the caller closes the session to leave the
// group. An error means the transactional session can no longer be trusted.
func (d *Dispatcher) Run(ctx context.Context) error {
	// Work outlives ctx by up to the grace period so that in-flight calls
	// get their answer and the transaction can be ended cleanly.
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	stopGrace := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(d.cfg.Grace, func() {
			d.log.Warn("shutdown grace period over: cancelling in-flight processor calls", "grace", d.cfg.Grace)
			cancelWork()
		})
		context.AfterFunc(work, func() { t.Stop() })
	})
	defer stopGrace()

	for {
		fetches := d.sess.PollRecords(ctx, d.cfg.MaxPollRecords)
		if fetches.IsClientClosed() || ctx.Err() != nil {
			// Records of this poll are neither dispatched nor committed;
			// the next owner of their partitions gets them.
			d.log.Info("polling stopped")
			return nil
		}
		fetches.EachError(func(topic string, partition int32, err error) {
			d.log.ErrorContext(ctx, "fetch failed", "topic", topic, "partition", partition, "err", err)
		})
		recs := fetches.Records()
		if len(recs) == 0 {
			continue
		}
		if err := d.transact(work, recs); err != nil {
			return err
		}
		if ctx.Err() != nil {
			d.log.Info("polling stopped after finishing in-flight work", "records", len(recs))
			return nil
		}
	}
}

// transact dispatches one poll inside one transaction.
func (d *Dispatcher) transact(ctx context.Context, recs []*kgo.Record) error {
	if err := d.sess.Begin(); err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	b := d.dispatch(ctx, recs)

	// Ending must work even when the grace period cut the work short.
	ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if b.error() == nil {
		// Surface produce failures before deciding: a transaction with a
		// lost outcome must not commit its offsets.
		if err := d.sess.Client().Flush(ectx); err != nil {
			b.fail(fmt.Errorf("flush outcomes: %w", err))
		}
	}
	// Every produce promise has run once Flush returned or failed.
	failure := b.error()
	try := kgo.TryCommit
	if failure != nil {
		try = kgo.TryAbort
	}
	committed, err := d.sess.End(ectx, try)
	if err != nil {
		d.m.transactions.WithLabelValues("failed").Inc()
		return fmt.Errorf("end transaction (%d records): %w", len(recs), err)
	}
	if !committed {
		d.m.transactions.WithLabelValues("aborted").Inc()
		reason := "group rebalanced"
		if failure != nil {
			reason = failure.Error()
		}
		d.log.WarnContext(ctx, "transaction aborted; its records will be consumed and dispatched again",
			"records", len(recs), "reason", reason)
		return nil
	}
	d.m.transactions.WithLabelValues("committed").Inc()
	for status, n := range b.outcomes {
		d.m.outcomes.WithLabelValues(status).Add(float64(n))
	}
	return nil
}

// batch collects what the goroutines of one poll report.
type batch struct {
	mu       sync.Mutex
	err      error
	outcomes map[string]int
}

func (b *batch) fail(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.err = errors.Join(b.err, err)
}

func (b *batch) error() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

func (b *batch) count(status string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.outcomes[status]++
}

// dispatch runs one goroutine chain per key and waits for all of them.
func (d *Dispatcher) dispatch(ctx context.Context, recs []*kgo.Record) *batch {
	b := &batch{outcomes: map[string]int{}}
	var wg sync.WaitGroup
	for _, chain := range byKey(recs) {
		if err := d.sem.Acquire(ctx, 1); err != nil {
			b.fail(fmt.Errorf("wait for a dispatch slot: %w", err))
			break
		}
		wg.Go(func() {
			defer d.sem.Release(1)
			for _, r := range chain {
				if err := d.handle(ctx, r, b); err != nil {
					// Later records of this user must not overtake this one;
					// the aborted transaction redelivers them all in order.
					b.fail(err)
					return
				}
			}
		})
	}
	wg.Wait()
	return b
}

// byKey groups records by key, keeping the poll's order within each group
// and the order of first appearance across groups.
func byKey(recs []*kgo.Record) [][]*kgo.Record {
	idx := make(map[string]int)
	var chains [][]*kgo.Record
	for _, r := range recs {
		k := string(r.Key)
		i, ok := idx[k]
		if !ok {
			i = len(chains)
			idx[k] = i
			chains = append(chains, nil)
		}
		chains[i] = append(chains[i], r)
	}
	return chains
}

// handle dispatches one record and produces its outcome in the transaction.
// An error means the record has no outcome and the transaction must abort.
func (d *Dispatcher) handle(ctx context.Context, r *kgo.Record, b *batch) error {
	var req financev1.PaymentRequested
	if err := proto.Unmarshal(r.Value, &req); err != nil {
		d.invalid(ctx, r, "undecodable", err)
		return nil
	}
	if req.GetPaymentId() <= 0 || req.GetUserId() <= 0 {
		d.invalid(ctx, r, "missing_ids", fmt.Errorf("payment_id %d, user_id %d", req.GetPaymentId(), req.GetUserId()))
		return nil
	}
	if key, err := kafka.ParseUserKey(r.Key); err != nil || key != req.GetUserId() {
		// Ordering is per record key; a mismatch is a producer bug worth
		// seeing, but the payment itself is still dispatched.
		d.log.WarnContext(ctx, "record key does not match user_id", "topic", r.Topic, "partition", r.Partition,
			"offset", r.Offset, "key", string(r.Key), "user_id", req.GetUserId(), "payment_id", req.GetPaymentId())
	}
	log := d.log.With("payment_id", req.GetPaymentId(), "user_id", req.GetUserId())

	var res processor.Result
	if err := payment.ValidateAmount(req.GetAmount()); err != nil {
		// Never sent: the processor would reject it anyway.
		res = processor.Result{Status: payment.StatusFailed, Reason: "invalid request: " + err.Error()}
	} else {
		d.publishProcessing(ctx, log, &req)
		var err error
		res, err = d.proc.Execute(ctx, processor.Payment{ID: req.GetPaymentId(), UserID: req.GetUserId(), Amount: req.GetAmount()})
		if err != nil {
			return fmt.Errorf("dispatch payment %d: %w", req.GetPaymentId(), err)
		}
	}

	out := &financev1.PaymentOutcome{
		PaymentId:    req.GetPaymentId(),
		UserId:       req.GetUserId(),
		Status:       outcomeStatus(res.Status),
		Reason:       res.Reason,
		ProcessorRef: res.Ref,
		Attempts:     int32(res.Attempts),
		DecidedAt:    timestamppb.Now(),
	}
	val, err := proto.Marshal(out)
	if err != nil {
		return fmt.Errorf("marshal outcome of payment %d: %w", req.GetPaymentId(), err)
	}
	// Not ctx: an outcome learned just as the grace period ends must still
	// be produced; the flush before End bounds the wait.
	d.sess.Produce(context.WithoutCancel(ctx), &kgo.Record{Topic: kafka.TopicOutcomes, Key: kafka.UserKey(req.GetUserId()), Value: val},
		func(_ *kgo.Record, err error) {
			if err != nil {
				b.fail(fmt.Errorf("produce outcome of payment %d: %w", req.GetPaymentId(), err))
			}
		})
	b.count(string(res.Status))

	level := slog.LevelDebug
	switch res.Status {
	case payment.StatusFailed:
		level = slog.LevelInfo
	case payment.StatusUnknown:
		level = slog.LevelWarn
	}
	log.Log(ctx, level, "payment dispatched", "status", res.Status, "reason", res.Reason,
		"processor_ref", res.Ref, "attempts", res.Attempts)
	return nil
}

// publishProcessing tells clients early that the payment is being sent. It
// is best effort and outside the transaction: the status consumer ignores it
// when it arrives after the final outcome, and a redelivery repeats it.
func (d *Dispatcher) publishProcessing(ctx context.Context, log *slog.Logger, req *financev1.PaymentRequested) {
	val, err := proto.Marshal(&financev1.PaymentOutcome{
		PaymentId: req.GetPaymentId(),
		UserId:    req.GetUserId(),
		Status:    financev1.OutcomeStatus_OUTCOME_STATUS_PROCESSING,
		DecidedAt: timestamppb.Now(),
	})
	if err != nil {
		log.ErrorContext(ctx, "marshal processing outcome", "err", err)
		return
	}
	d.early.Produce(ctx, &kgo.Record{Topic: kafka.TopicOutcomes, Key: kafka.UserKey(req.GetUserId()), Value: val},
		func(_ *kgo.Record, err error) {
			if err != nil {
				d.m.processingDropped.Inc()
				log.WarnContext(ctx, "processing outcome not published", "err", err)
			}
		})
}

// invalid logs and counts a record that cannot be dispatched. Its offset is
// committed with the rest of the poll so the partition is not blocked.
// TODO(dead letters): publish it to a dead-letter topic as well.
func (d *Dispatcher) invalid(ctx context.Context, r *kgo.Record, reason string, err error) {
	d.m.invalid.WithLabelValues(reason).Inc()
	d.log.ErrorContext(ctx, "skipping invalid payments.requested record", "reason", reason,
		"topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "key", string(r.Key), "err", err)
}

func outcomeStatus(s payment.Status) financev1.OutcomeStatus {
	switch s {
	case payment.StatusSucceeded:
		return financev1.OutcomeStatus_OUTCOME_STATUS_SUCCEEDED
	case payment.StatusFailed:
		return financev1.OutcomeStatus_OUTCOME_STATUS_FAILED
	default:
		return financev1.OutcomeStatus_OUTCOME_STATUS_UNKNOWN
	}
}
