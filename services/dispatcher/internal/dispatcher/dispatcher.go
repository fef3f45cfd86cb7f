// Package dispatcher turns payments.requested records into processor calls
// and payments.outcomes records, as a continuous pipeline:
//
//   - a poller keeps fetching while calls run, into per-user FIFO queues,
//     and pauses a partition whose buffered records reach its bound;
//   - users with ready work are served in the order their next records
//     were fetched, one call in flight per user (strict per-user order),
//     many users in parallel even within one partition, at most
//     MaxInFlight calls at once, paced by the pacer;
//   - every CommitInterval one Kafka transaction commits the outcomes
//     produced so far together with, per partition, the offset of the
//     lowest unfinished record: a crash replays work, never skips it; a
//     final outcome makes the commit come early, MinCommitInterval after
//     the previous one, so that clients learn it sooner;
//   - a record that cannot be dispatched (undecodable, ids missing, keyed
//     by another user), or whose payment ends unknown, is dead-lettered to
//     payments.requested.dlq in the same transaction: never dropped, never
//     blocking its partition, never dead-lettered twice.
//
// All Kafka transaction calls (poll, produce, end, begin) are serialized by
// one RWMutex: polls and produces share it, ending a transaction takes it
// alone, as franz-go requires.
package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"

	"github.com/finsvc/finance/pkg/dlq"
	"github.com/finsvc/finance/pkg/kafka"
	"github.com/finsvc/finance/pkg/payment"
	"github.com/finsvc/finance/pkg/wire"
	"github.com/finsvc/finance/services/dispatcher/internal/guard"
	"github.com/finsvc/finance/services/dispatcher/internal/pacer"
	"github.com/finsvc/finance/services/dispatcher/internal/processor"
)

// Source is the dlq-source header of the dispatcher's dead letters.
const Source = "dispatcher"

// Config tunes a Dispatcher.
type Config struct {
	// Brokers, Group and TransactionalID configure the Kafka session;
	// TransactionalID must be unique per replica and stable across its
	// restarts so that a zombie predecessor is fenced.
	Brokers         []string
	Group           string
	TransactionalID string
	// KafkaOpts are more client options for the session: an external
	// cluster's SASL and TLS (kafka.SecurityOpts).
	KafkaOpts []kgo.Opt
	// MaxInFlight bounds the concurrent processor calls (= users served at
	// once). It should exceed L × processor latency.
	MaxInFlight int
	// MaxBuffered bounds the records held in memory (queued, in flight or
	// finished but not yet committed); each owned partition gets an equal
	// part of it and is paused when its part is full.
	MaxBuffered int
	// MaxPollRecords bounds the records taken from one poll.
	MaxPollRecords int
	// CommitInterval is the time between transactions.
	CommitInterval time.Duration
	// MinCommitInterval, when not zero, is how soon after the previous
	// commit a final outcome commits its transaction, instead of waiting
	// for CommitInterval: at most 1/MinCommitInterval transactions a
	// second, for a shorter wait between the processor's answer and the
	// status consumer's read (read_committed sees nothing before the
	// commit). Zero commits on CommitInterval only.
	MinCommitInterval time.Duration
	// Grace bounds how long in-flight work may run after shutdown begins.
	Grace time.Duration
	// Guard, when set, admits each payment durably before its first
	// processor call: only a payment this database holds, not final yet,
	// is sent; with the as-is API it is also claimed, and a payment claimed
	// before may already have been sent, so it is never sent again and ends
	// unknown; with the proposed API a payment that may have been sent
	// before, accepted longer ago than the processor keeps keys, is not
	// sent again either and ends unknown. The service always sets it; only
	// tests of the pipeline alone (pacing, ordering, commits) leave it nil.
	Guard Guard
}

// Guard decides whether a payment may be sent to the processor;
// *guard.Guard is the implementation.
type Guard interface {
	// Admit returns guard.Send when payment id with uid may be sent (and,
	// with the as-is API, claimed it), or why not. An error means nothing
	// is known: do not send.
	Admit(ctx context.Context, id int64, uid uuid.UUID) (guard.Verdict, error)
	// Release drops a claim whose payment was certainly never sent.
	Release(ctx context.Context, paymentID int64) error
}

// Share is told how many of the topic's partitions this replica owns, on
// every assignment and revocation; *pacer.Pacer implements it.
type Share interface {
	SetShare(owned, total int)
}

// Dispatcher is the consume → call → produce pipeline of one replica.
type Dispatcher struct {
	sess  *kgo.GroupTransactSession
	early *kgo.Client
	proc  processor.Client
	share Share
	log   *slog.Logger
	m     *Metrics
	cfg   Config
	// tracer starts the dispatch span of each record (OpenTelemetry's
	// global provider, see obs.StartTracing).
	tracer trace.Tracer

	// txnMu: RLock to poll or produce, Lock to end and begin a transaction.
	txnMu sync.RWMutex
	// pollMu guards the poll cancellation a committer uses to take txnMu.
	pollMu     sync.Mutex
	pollCancel context.CancelFunc
	// commitTurn is non-nil while a commit waits for or holds txnMu: the
	// poller does not start a poll then, and waits for the commit to close
	// it.
	commitTurn chan struct{}

	mu sync.Mutex
	st state
	// idle is signalled when in-flight calls reach zero.
	idle *sync.Cond
	// room holds a token once buffered records were let go, for a poller
	// waiting on a full buffer.
	room chan struct{}
	// outcomeReady holds a token once a final outcome was produced into
	// the open transaction, for the committer (MinCommitInterval).
	outcomeReady chan struct{}
}

// New returns a Dispatcher and opens its transactional Kafka session. It
// publishes early PROCESSING outcomes through the non-transactional early
// client, calls the processor through proc and tells share its partitions.
// The Kafka client logs through kafkaLogger. Close leaves the group.
func New(cfg Config, early *kgo.Client, proc processor.Client, share Share, kafkaLogger, logger *slog.Logger, m *Metrics) (*Dispatcher, error) {
	cfg.MaxInFlight = max(cfg.MaxInFlight, 1)
	cfg.MaxBuffered = max(cfg.MaxBuffered, 1)
	cfg.MaxPollRecords = max(cfg.MaxPollRecords, 1)
	if cfg.CommitInterval <= 0 {
		cfg.CommitInterval = 200 * time.Millisecond
	}
	if m == nil {
		m = NewMetrics(nil)
	}
	d := &Dispatcher{early: early, proc: proc, share: share, log: logger, m: m, cfg: cfg, st: newState(), room: make(chan struct{}, 1),
		outcomeReady: make(chan struct{}, 1),
		tracer:       otel.Tracer("github.com/finsvc/finance/services/dispatcher")}
	d.idle = sync.NewCond(&d.mu)
	sess, err := newSession(cfg.Brokers, cfg.KafkaOpts, kafkaLogger, cfg.Group, cfg.TransactionalID, d.assigned, d.revoked)
	if err != nil {
		return nil, err
	}
	d.sess = sess
	return d, nil
}

// Client is the session's client (lag, readiness).
func (d *Dispatcher) Client() *kgo.Client { return d.sess.Client() }

// Close leaves the group and closes the session.
func (d *Dispatcher) Close() { d.sess.Close() }

// Run pipelines until ctx ends. On shutdown it stops polling and dispatching,
// lets in-flight calls finish within the grace period, commits, and returns
// nil; Close then leaves the group. An error means the transactional session
// can no longer be trusted and the process should restart.
func (d *Dispatcher) Run(ctx context.Context) error {
	// Calls outlive ctx by up to the grace period so that in-flight calls
	// get their answer and their outcomes can be committed.
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

	if err := d.sess.Begin(); err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	pollDone := make(chan struct{})
	go func() {
		defer close(pollDone)
		d.poll(ctx, work)
	}()

	if err := d.commitLoop(ctx, work); err != nil {
		return err
	}

	// Shutdown: no new polls or dispatches; in-flight calls finish (or are
	// cut off by the grace period) while commits continue.
	<-pollDone
	d.mu.Lock()
	d.st.stopping = true
	d.mu.Unlock()
	idle := make(chan struct{})
	go func() {
		d.mu.Lock()
		for d.st.inFlight > 0 {
			d.idle.Wait()
		}
		d.mu.Unlock()
		close(idle)
	}()
	t := time.NewTicker(d.cfg.CommitInterval)
	defer t.Stop()
	for waiting := true; waiting; {
		select {
		case <-idle:
			waiting = false
		case <-t.C:
			if err := d.commit(work); err != nil {
				return err
			}
		}
	}
	if err := d.commit(work); err != nil {
		return err
	}
	d.log.Info("dispatching stopped after finishing in-flight work")
	return nil
}

// commitLoop commits every CommitInterval and, with MinCommitInterval set,
// as soon as a final outcome waits and MinCommitInterval has passed since
// the previous commit, until ctx ends.
func (d *Dispatcher) commitLoop(ctx, work context.Context) error {
	t := time.NewTicker(d.cfg.CommitInterval)
	defer t.Stop()
	var (
		ready  <-chan struct{}  // outcomeReady while no early commit is scheduled
		early  <-chan time.Time // the scheduled early commit
		listen = func() {
			if d.cfg.MinCommitInterval > 0 {
				ready = d.outcomeReady
			}
		}
		lastCommit = time.Now()
	)
	listen()
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
			continue
		case <-ready:
			// Schedule the commit; take no more tokens until it is done.
			early, ready = time.After(time.Until(lastCommit.Add(d.cfg.MinCommitInterval))), nil
			continue
		case <-early:
		case <-t.C:
		}
		if err := d.commit(work); err != nil {
			return err
		}
		lastCommit, early = time.Now(), nil
		listen()
	}
	return nil
}

// poll fetches records into the user queues until ctx ends.
func (d *Dispatcher) poll(ctx, work context.Context) {
	for ctx.Err() == nil {
		d.txnMu.RLock()
		d.pollMu.Lock()
		if turn := d.commitTurn; turn != nil {
			// A commit is waiting for txnMu: let it through, and poll
			// again once it is done.
			d.pollMu.Unlock()
			d.txnMu.RUnlock()
			select {
			case <-turn:
			case <-ctx.Done():
			}
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		d.pollCancel = cancel
		d.pollMu.Unlock()

		d.mu.Lock()
		gen := d.st.gen
		room := min(d.cfg.MaxPollRecords, d.cfg.MaxBuffered-d.st.buffered)
		d.mu.Unlock()
		if room <= 0 {
			// The buffer is full: wait for calls to finish, not for records.
			d.pollMu.Lock()
			d.pollCancel = nil
			d.pollMu.Unlock()
			cancel()
			d.txnMu.RUnlock()
			select {
			case <-d.room:
			case <-ctx.Done():
				return
			}
			continue
		}
		fetches := d.sess.PollRecords(pctx, room)

		d.pollMu.Lock()
		d.pollCancel = nil
		d.pollMu.Unlock()
		cancel()
		if fetches.IsClientClosed() {
			d.txnMu.RUnlock()
			return
		}
		fetches.EachError(func(topic string, partition int32, err error) {
			if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
				d.log.ErrorContext(ctx, "fetch failed", "topic", topic, "partition", partition, "err", err)
			}
		})
		recs := fetches.Records()
		if len(recs) > 0 {
			d.mu.Lock()
			pause := d.enqueue(gen, recs, time.Now())
			d.dispatchLocked(work)
			// Paused while d.mu is held: a call finishing in between
			// could otherwise resume the partition first, and this late
			// pause would then hold it forever while its state says
			// "not paused" (client pause and resume only take the
			// client's own lock, never d.mu).
			if len(pause) > 0 {
				d.sess.Client().PauseFetchPartitions(map[string][]int32{kafka.TopicRequested: pause})
			}
			d.mu.Unlock()
		}
		d.txnMu.RUnlock()
	}
}

// dispatchLocked starts calls for ready users, the earliest fetched record
// first (readyUsers), while the in-flight bound allows. d.mu is held.
func (d *Dispatcher) dispatchLocked(work context.Context) {
	s := &d.st
	for !s.stopping && s.inFlight < d.cfg.MaxInFlight {
		u := s.ready.pop()
		if u == nil {
			break
		}
		u.inReady = false
		if u.busy || len(u.items) == 0 {
			continue
		}
		it := u.items[0]
		k := salvageKey{it.rec.Partition, it.rec.Offset}
		if res, ok := s.salvage[k]; ok && it.gen == s.gen {
			it.salvaged = res
			delete(s.salvage, k)
		}
		u.busy = true
		s.inFlight++
		d.m.inFlight.Set(float64(s.inFlight))
		d.m.dispatchDelay.Observe(time.Since(it.fetched).Seconds())
		// Its own context, so that revoking its partition cancels it.
		ctx, cancel := context.WithCancelCause(work)
		it.cancel, it.executed = cancel, make(chan struct{})
		go d.work(work, ctx, u, it)
	}
	d.m.buffered.Set(float64(s.buffered))
}

// work dispatches one record in ctx, the item's own context (derived from
// work, the pipeline's), and produces its outcome.
func (d *Dispatcher) work(work, ctx context.Context, u *userQueue, it *item) {
	// The dispatch span continues the payment's trace from the record's
	// headers (kotel's receive span in it.rec.Context); the processor call
	// is its child, and so is the outcome record (result.trace).
	ctx, span := d.tracer.Start(trace.ContextWithSpanContext(ctx, trace.SpanContextFromContext(it.rec.Context)),
		"dispatch payment", trace.WithSpanKind(trace.SpanKindInternal))
	res, ok := d.execute(ctx, it)
	if res != nil {
		res.trace = span.SpanContext()
	}
	span.End()
	close(it.executed)
	it.cancel(nil)

	d.txnMu.RLock()
	defer d.txnMu.RUnlock()
	d.mu.Lock()
	s := &d.st
	current := s.parts[it.rec.Partition] == it.part && it.gen == s.gen
	switch {
	case !current:
		// The transaction this record belonged to was aborted, or its
		// partition revoked (its call then cancelled: whatever it
		// learnt is the new owner's to learn again): keep the result for
		// the redelivery of a kept partition, which then needs no call.
		if ok && res != nil && s.parts[it.rec.Partition] != nil {
			s.salvage[salvageKey{it.rec.Partition, it.rec.Offset}] = res
		}
	case !ok:
		// Not sent (shutdown): the record stays unfinished and is
		// redelivered; the user's later records must wait behind it.
	default:
		it.entry.done = true
		it.entry.res = res
		d.emitLocked(it.part)
		it.part.buffered--
		s.buffered--
		d.freedLocked()
		s.dirty = true
	}
	s.inFlight--
	d.m.inFlight.Set(float64(s.inFlight))
	if s.inFlight == 0 {
		d.idle.Broadcast()
	}
	// A record no longer current is redelivered (or is the new owner's):
	// the user's queue moves on either way.
	if (ok || !current) && len(u.items) > 0 && u.items[0] == it {
		u.items = u.items[1:]
		u.busy = false
		if len(u.items) == 0 {
			if s.users[u.key] == u {
				delete(s.users, u.key)
			}
		} else {
			s.ready.push(u)
		}
	}
	resume := ok && current && it.part.paused && !d.full(it.part)
	if resume {
		it.part.paused = false
	}
	d.dispatchLocked(work)
	if resume {
		// Under d.mu, in the order of the state changes (see poll).
		d.sess.Client().ResumeFetchPartitions(map[string][]int32{kafka.TopicRequested: {it.rec.Partition}})
	}
	d.mu.Unlock()
}

// emitLocked puts into the open transaction the results of partition p's
// records that are finished and no longer behind an unfinished record;
// txnMu is read-held and d.mu held.
//
// A result waits for the records below it: the transaction commits the
// partition's offset at its lowest unfinished record, and everything from
// there is consumed again after an abort, a rebalance or a crash. An
// outcome committed for a record above that offset would be produced a
// second time by whoever dispatches the record again (this replica reusing
// the result it kept, or the partition's next owner), so two final outcomes
// of one payment would be committed. Produced in offset order, an outcome
// commits exactly when the offset past its record does.
func (d *Dispatcher) emitLocked(p *partState) {
	for _, e := range p.finished() {
		if e.res != nil {
			d.produce(e.rec, e.res)
		}
	}
}

// freedLocked tells a poller waiting on a full buffer that records were let
// go; d.mu is held. A token already waiting is enough: the poller looks at
// the count itself.
func (d *Dispatcher) freedLocked() {
	select {
	case d.room <- struct{}{}:
	default:
	}
}

// execute decodes a record and calls the processor. res is nil for a record
// that gets nothing published (never: every record gets an outcome or a dead
// letter); ok is false when the payment was not sent because ctx ended.
func (d *Dispatcher) execute(ctx context.Context, it *item) (res *result, ok bool) {
	if it.salvaged != nil {
		return it.salvaged, true
	}
	r := it.rec
	req, err := wire.DecodeRequested(r.Value)
	if err != nil {
		return d.deadLetter(ctx, it, ReasonUndecodable, err, 0, 0), true
	}
	if req.PaymentID <= 0 || req.UserID <= 0 {
		return d.deadLetter(ctx, it, ReasonMissingIDs, fmt.Errorf("payment_id %d, user_id %d: both must be positive",
			req.PaymentID, req.UserID), req.PaymentID, req.UserID), true
	}
	if key, err := kafka.ParseUserKey(r.Key); err != nil || key != req.UserID {
		// Per-user order rests on the record key: a record keyed by
		// another user may overtake (or be overtaken by) its user's other
		// payments, so it is not dispatched.
		return d.deadLetter(ctx, it, ReasonKeyMismatch, fmt.Errorf("record key %q is not user_id %d", r.Key, req.UserID),
			req.PaymentID, req.UserID), true
	}
	uid, err := payment.ParseUID(req.PaymentUID)
	if err != nil {
		// Without a uid the payment cannot be told from another database's
		// payment with the same id, nor keyed at the processor.
		return d.deadLetter(ctx, it, ReasonStale, fmt.Errorf("record carries no valid payment_uid (made before migration 00004?): %w", err),
			req.PaymentID, req.UserID), true
	}
	log := d.log.With("payment_id", req.PaymentID, "payment_uid", uid, "user_id", req.UserID)

	var pr processor.Result
	started := time.Now()
	if err := payment.ValidateAmount(req.Amount); err != nil {
		// Never sent: the processor would reject it anyway.
		pr = processor.Result{Status: payment.StatusFailed, Reason: "invalid request: " + err.Error()}
	} else {
		sent := true
		if g := d.cfg.Guard; g != nil {
			// Only a payment this database holds, open, may be sent; with
			// the as-is API the same statement claims it, so it is sent at
			// most once ever. The verdict commits before the first call.
			v, err := g.Admit(ctx, req.PaymentID, uid)
			switch {
			case err != nil && ctx.Err() != nil:
				log.WarnContext(ctx, "payment not sent: dispatch guard interrupted; it will be redelivered", "err", err)
				return nil, false
			case err != nil:
				// Not sent by this call, but an earlier owner may have sent
				// it (the database would have said so): unknown, for the
				// reconciler, never failed.
				d.m.guard.WithLabelValues("error").Inc()
				log.ErrorContext(ctx, "payment not sent: dispatch guard failed", "err", err)
				pr = processor.Result{Status: payment.StatusUnknown, Cause: CauseGuardFailed,
					Reason: "not sent: the dispatch guard could not read the payment, and an earlier owner may have sent it: " + err.Error()}
				sent = false
			default:
				d.m.guard.WithLabelValues(v.String()).Inc()
				switch v {
				case guard.Stale:
					return d.deadLetter(ctx, it, ReasonStale, fmt.Errorf("the database holds no payment %d with uid %s: "+
						"a record from before a restore, or of another database; not sent", req.PaymentID, uid),
						req.PaymentID, req.UserID), true
				case guard.Final:
					// Already succeeded or failed: a replayed or rewound
					// record. Nothing is sent and nothing published.
					log.InfoContext(ctx, "payment not sent: already final (a replayed or rewound record)",
						"topic", r.Topic, "partition", r.Partition, "offset", r.Offset)
					return nil, true
				case guard.Claimed:
					pr = processor.Result{Status: payment.StatusUnknown, Cause: CauseRedelivered, Reason: ReasonRedeliveredAsIs}
					sent = false
				case guard.KeyExpired:
					pr = processor.Result{Status: payment.StatusUnknown, Cause: CauseKeyExpired, Reason: ReasonKeyExpired}
					sent = false
				}
			}
		}
		if sent {
			d.publishProcessing(ctx, log, req)
			var err error
			// In line at the pacer by fetch order (pacer.WithOrder).
			pr, err = d.proc.Execute(pacer.WithOrder(ctx, it.seq),
				processor.Payment{ID: req.PaymentID, UID: uid, UserID: req.UserID, Amount: req.Amount})
			if err != nil {
				if g := d.cfg.Guard; g != nil && errors.Is(err, processor.ErrNotSent) {
					// Certainly never sent: the redelivery may send it.
					if rerr := g.Release(ctx, req.PaymentID); rerr != nil {
						log.WarnContext(ctx, "dispatch claim of an unsent payment not released; its redelivery will be unknown", "err", rerr)
					}
				}
				log.WarnContext(ctx, "payment not sent; it will be redelivered", "err", err)
				return nil, false
			}
		}
	}
	if errors.Is(context.Cause(ctx), errRevoked) {
		// Its partition was revoked while it ran: what it learnt is not
		// produced (nor kept for a redelivery: a cancelled call's result
		// is incomplete), and the new owner dispatches the payment again.
		log.InfoContext(ctx, "dispatch cancelled: partition revoked; the new owner dispatches the payment",
			"status", pr.Status, "reason", pr.Reason, "attempts", pr.Attempts,
			"topic", r.Topic, "partition", r.Partition, "offset", r.Offset)
		return nil, false
	}
	// At debug, a decline too: the gateway's request line is a payment's
	// one line at info; what became of it is in its status, its events and
	// dispatcher_outcomes_total.
	if pr.Status != payment.StatusUnknown {
		log.DebugContext(ctx, "payment dispatched", "status", pr.Status, "reason", pr.Reason,
			"processor_ref", pr.Ref, "attempts", pr.Attempts)
	}
	res = &result{outcome: &wire.Outcome{
		PaymentID:    req.PaymentID,
		PaymentUID:   uid.String(),
		UserID:       req.UserID,
		Status:       outcomeStatus(pr.Status),
		Reason:       pr.Reason,
		ProcessorRef: pr.Ref,
		Attempts:     int32(pr.Attempts),
		DecidedAt:    time.Now(),
	}}
	if pr.Status == payment.StatusUnknown {
		// The dispatcher gave up without learning the outcome: the request
		// is dead-lettered with the unknown outcome, for reconciliation to
		// resolve or an operator to replay.
		cause := pr.Cause
		if cause == "" {
			cause = processor.CauseBudgetSpent
		}
		res.letter = &dlq.Letter{
			Reason:    cause,
			Err:       errors.New(pr.Reason),
			Attempts:  pr.Attempts,
			FirstSeen: started,
			Source:    Source,
			PaymentID: req.PaymentID,
			UserID:    req.UserID,
		}
		log.WarnContext(ctx, "payment dispatched: outcome unknown, request dead-lettered", "status", pr.Status,
			"reason", pr.Reason, "dlq_reason", cause, "attempts", pr.Attempts,
			"topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "dlq_topic", kafka.DLQTopic(r.Topic))
	}
	return res, true
}
