// Package consumer runs the status consumer's Kafka loop: it reads
// PaymentOutcomes from payments.outcomes (group "status-consumer",
// read_committed), applies all the outcomes of one poll in one PostgreSQL
// transaction with ledger.ApplyAll (pkg/ledger, the rules the reconciler
// uses too), emits the resulting PaymentEvents to payments.events with one
// produce and flush, and only then commits the records' offsets (batch.go).
// When a batch's transaction fails, the poll is applied record by record,
// one transaction each (handle), with retries.
//
// A record that can never apply (undecodable, invalid, unknown payment,
// another user's payment, data PostgreSQL refuses) is published alone to
// payments.outcomes.dlq (pkg/dlq) before its offset is committed: never
// dropped, never blocking its partition or failing its batch-mates. So is
// an outcome that contradicts its payment's final status (succeeded after
// failed, or failed after succeeded): a conflict, which changes nothing in
// the ledger and is recorded in outcome_conflicts for verify.
//
// Delivery is at least once end to end: a crash anywhere re-reads the outcome,
// the ledger recognises the redelivery, and the event is emitted again with
// the same event_id. The records of one partition are applied in order.
package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"

	"github.com/finsvc/finance/pkg/kafka"
	"github.com/finsvc/finance/pkg/ledger"
	"github.com/finsvc/finance/pkg/payment"
	"github.com/finsvc/finance/pkg/postgres"
	"github.com/finsvc/finance/pkg/wire"
)

// Group is the consumer group of every status consumer replica.
const Group = "status-consumer"

// Actor is the payment_transitions.actor of every change the consumer makes.
const Actor = "status-consumer"

// Outcome is what the dispatcher learned about a payment.
type Outcome struct {
	PaymentID int64
	// PaymentUID must be the payment's uid: ids repeat across a database
	// restore, uids never do.
	PaymentUID uuid.UUID
	UserID     int64
	Status     payment.Status // processing, succeeded, failed or unknown
	Reason     string
}

// Config tunes a Consumer.
type Config struct {
	// Brokers are the Kafka seed brokers.
	Brokers []string
	// KafkaOpts are more client options: an external cluster's SASL and
	// TLS (kafka.SecurityOpts).
	KafkaOpts []kgo.Opt
	// MaxPollRecords bounds the records taken in one poll.
	MaxPollRecords int
	// RetryTimeout is how long one record is retried (PostgreSQL or Kafka
	// failing) before its partition is rewound to it and the poll loop moves
	// on; the record is fetched and tried again on the next poll.
	RetryTimeout time.Duration
	// AttemptTimeout bounds one PostgreSQL transaction, one produce or one
	// offset commit.
	AttemptTimeout time.Duration
	// BatchWait is how long a poll that got outcomes waits for more (up
	// to MaxPollRecords) before they are applied: fewer, larger batches
	// when outcomes trickle in, at most this much later. 0 applies what
	// the first poll got at once.
	BatchWait time.Duration
}

// fetchMaxWait is how long the broker may hold a fetch that has nothing to
// return. It answers as soon as an outcome is readable, so this bounds only
// the idle consumer's fetches: two a second, not one per BatchWait (50 a
// second, which cost the idle consumer and the broker a few percent of a
// core each).
const fetchMaxWait = 500 * time.Millisecond

// Consumer applies outcomes. Create it with New, run it with Run, and Close it.
type Consumer struct {
	cfg    Config
	db     *pgxpool.Pool
	cl     *kgo.Client
	logger *slog.Logger
	m      *metrics

	mu sync.Mutex
	// pending holds, per partition, the last processed record whose offset
	// is not committed yet.
	pending map[topicPartition]*kgo.Record
	// deferrals holds, per partition, its head record deferred in a row.
	deferrals map[topicPartition]headDeferrals
	// abortPoll cancels the work of the current poll, set while one runs.
	abortPoll context.CancelFunc

	// recordByRecord turns batches off: every poll takes the path of a
	// failed batch. Only BenchmarkConsumer sets it, to compare the two.
	recordByRecord bool

	// tracer starts the apply spans (OpenTelemetry's global provider, see
	// obs.StartTracing).
	tracer trace.Tracer
}

type topicPartition struct {
	topic     string
	partition int32
}

// headDeferrals counts how many times in a row the record at offset, the
// first its partition has not processed, was deferred.
type headDeferrals struct {
	offset int64
	n      int
}

// New returns a Consumer whose Kafka client joins Group on payments.outcomes
// and produces events, and that applies outcomes to db. Its metrics are
// registered on reg.
func New(cfg Config, db *pgxpool.Pool, logger *slog.Logger, reg prometheus.Registerer) (*Consumer, error) {
	c := &Consumer{
		cfg:       cfg,
		db:        db,
		logger:    logger,
		m:         newMetrics(reg),
		pending:   map[topicPartition]*kgo.Record{},
		deferrals: map[topicPartition]headDeferrals{},
		tracer:    otel.Tracer("github.com/finsvc/finance/services/status-consumer"),
	}
	opts := append([]kgo.Opt{
		kgo.ConsumerGroup(Group),
		// A crashed member's partitions move after this long (the default
		// is 45 s): outcomes wait no longer than that to be applied.
		kgo.SessionTimeout(10 * time.Second),
		kgo.ConsumeTopics(kafka.TopicOutcomes),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.DisableAutoCommit(),
		// Revokes wait until the records of a poll are processed and committed.
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsCallbackBlocked(func(context.Context, *kgo.Client) { c.abort() }),
		kgo.OnPartitionsRevoked(c.onRevoked),
		kgo.OnPartitionsLost(c.onLost),
		// A batch's events are flushed at once: nothing to linger for.
		kgo.ProducerLinger(0),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.FetchMaxWait(fetchMaxWait),
	}, cfg.KafkaOpts...)
	cl, err := kafka.NewClient(cfg.Brokers, logger, opts...)
	if err != nil {
		return nil, err
	}
	c.cl = cl
	return c, nil
}

// Ping checks that a Kafka broker answers.
func (c *Consumer) Ping(ctx context.Context) error {
	return kafka.Ping(ctx, c.cl)
}

// Close leaves the group, committing what was processed, and closes the client.
func (c *Consumer) Close() {
	c.cl.CloseAllowingRebalance()
}

// Run polls, applies and commits until ctx ends. On return, every processed
// record is committed (or the commit was tried and logged); Close then leaves
// the group.
func (c *Consumer) Run(ctx context.Context) error {
	for {
		fetches := c.poll(ctx)
		if fetches.IsClientClosed() || ctx.Err() != nil {
			break
		}
		fetches.EachError(func(topic string, partition int32, err error) {
			c.logger.ErrorContext(ctx, "fetch", "topic", topic, "partition", partition, "err", err)
		})
		c.process(ctx, fetches)
		c.cl.AllowRebalance()
	}
	c.cl.AllowRebalance()
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.AttemptTimeout)
	defer cancel()
	c.commitPending(cctx)
	return nil
}

// poll waits for outcomes, then gathers more for BatchWait at most, up to
// MaxPollRecords in all, so that outcomes trickling in are applied in fewer,
// larger transactions. Rebalances wait for the poll to be processed
// (BlockRebalanceOnPoll), so they wait BatchWait more at most.
func (c *Consumer) poll(ctx context.Context) kgo.Fetches {
	fetches := c.cl.PollRecords(ctx, c.cfg.MaxPollRecords)
	n := fetches.NumRecords()
	if c.cfg.BatchWait <= 0 || n == 0 || n >= c.cfg.MaxPollRecords || fetches.IsClientClosed() || ctx.Err() != nil {
		return fetches
	}
	wait, cancel := context.WithTimeout(ctx, c.cfg.BatchWait)
	defer cancel()
	for n < c.cfg.MaxPollRecords {
		more := c.cl.PollRecords(wait, c.cfg.MaxPollRecords-n)
		if wait.Err() != nil && more.NumRecords() == 0 {
			break // the wait is over: its error fetch is not an error
		}
		fetches = append(fetches, more...)
		n += more.NumRecords()
	}
	return fetches
}

// process handles one poll: in one batch (processBatch) or, when the
// batch's transaction fails, record by record with each partition in its
// own goroutine; then it commits what was done and rewinds each partition that stopped early to its
// first unprocessed record, so that the next poll fetches it again.
func (c *Consumer) process(ctx context.Context, fetches kgo.Fetches) {
	work, cancel := context.WithCancel(ctx)
	c.mu.Lock()
	c.abortPoll = cancel
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.abortPoll = nil
		c.mu.Unlock()
		cancel()
	}()

	type progress struct {
		done, undone *kgo.Record
		// deferred: undone failed past the retry timeout (it was not
		// merely left when the poll was aborted).
		deferred bool
	}
	// One part per partition, its records in offset order: a poll that
	// gathered more (poll) may hold a partition in several fetches.
	var parts []kgo.FetchTopicPartition
	index := map[topicPartition]int{}
	fetches.EachPartition(func(p kgo.FetchTopicPartition) {
		if len(p.Records) == 0 {
			return
		}
		tp := topicPartition{p.Topic, p.Partition}
		i, ok := index[tp]
		if !ok {
			index[tp] = len(parts)
			parts = append(parts, p)
			return
		}
		parts[i].Records = append(slices.Clip(parts[i].Records), p.Records...)
	})
	results := make([]progress, len(parts))
	if work.Err() != nil { // aborted before it began: all of it waits for the next poll
		for i, p := range parts {
			results[i].undone = p.Records[0]
		}
	} else if finished, ok := c.processBatch(work, parts); ok {
		for i, p := range parts {
			if n := finished[i]; n > 0 {
				results[i].done = p.Records[n-1]
			}
			if n := finished[i]; n < len(p.Records) {
				results[i].undone, results[i].deferred = p.Records[n], true
			}
		}
	} else {
		var wg sync.WaitGroup
		for i, p := range parts {
			wg.Go(func() {
				for _, rec := range p.Records {
					if work.Err() != nil {
						results[i].undone = rec
						return
					}
					if c.handle(work, rec) != nil {
						results[i].undone, results[i].deferred = rec, work.Err() == nil
						return
					}
					results[i].done = rec
				}
			})
		}
		wg.Wait()
	}

	rewind := map[string]map[int32]kgo.EpochOffset{}
	c.mu.Lock()
	for _, r := range results {
		if r.done != nil {
			c.pending[topicPartition{r.done.Topic, r.done.Partition}] = r.done
		}
		if u := r.undone; u != nil {
			if rewind[u.Topic] == nil {
				rewind[u.Topic] = map[int32]kgo.EpochOffset{}
			}
			rewind[u.Topic][u.Partition] = kgo.EpochOffset{Epoch: u.LeaderEpoch, Offset: u.Offset}
		}
		switch {
		case r.deferred:
			c.countDeferral(r.undone)
		case r.done != nil:
			c.resetDeferrals(topicPartition{r.done.Topic, r.done.Partition})
		}
	}
	c.mu.Unlock()
	if len(rewind) > 0 {
		c.cl.SetOffsets(rewind) // before AllowRebalance, as SetOffsets requires
	}
	cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.AttemptTimeout)
	defer ccancel()
	c.commitPending(cctx)
}

// handle applies one record and emits its event, on its own: the path a
// poll takes when its batch failed (processBatch). It returns nil when the
// record is finished with, including when it can never apply and was
// dead-lettered, and an error when it must be tried again later.
func (c *Consumer) handle(ctx context.Context, rec *kgo.Record) error {
	firstSeen := time.Now()
	ctx, span := c.tracer.Start(recordContext(ctx, rec), spanApply)
	defer span.End()
	o, reason, cause := parse(rec)
	if reason != "" {
		return c.deadLetter(ctx, rec, o, reason, cause, 1, firstSeen)
	}

	res, attempts, err := c.apply(ctx, o)
	if reason := permanentReason(err); reason != "" {
		if err := c.deadLetter(ctx, rec, o, reason, err, attempts, firstSeen); err != nil {
			return err
		}
		if !refusedByPostgres(reason) || o.Status == payment.StatusUnknown {
			return nil // no payment of this user to mark
		}
		// The payment is this user's but its outcome cannot be applied:
		// it shows unknown, never failed, until reconciliation or a replay
		// of the dead letter resolves it.
		o = Outcome{PaymentID: o.PaymentID, PaymentUID: o.PaymentUID, UserID: o.UserID, Status: payment.StatusUnknown,
			Reason: fmt.Sprintf("outcome %s dead-lettered: %v", o.Status, err)}
		res, _, err = c.apply(ctx, o)
		if permanentReason(err) != "" {
			c.logger.ErrorContext(ctx, "mark dead-lettered payment unknown", "payment_id", o.PaymentID, "user_id", o.UserID, "err", err)
			return nil
		}
	}
	if err != nil {
		c.m.deferred.WithLabelValues("apply").Inc()
		c.logger.ErrorContext(ctx, "apply outcome: giving up for now, the record will be fetched again",
			"payment_id", o.PaymentID, "user_id", o.UserID, "topic", rec.Topic, "partition", rec.Partition, "offset", rec.Offset, "err", err)
		return err
	}
	if err := c.applied(ctx, rec, o, res, attempts, firstSeen); err != nil {
		return err
	}
	if res.Event == nil {
		return nil
	}

	payload, err := wire.EncodeEvent(*res.Event)
	if err == nil {
		err = c.produceEvent(ctx, res.Event, payload)
	}
	if err != nil {
		c.m.deferred.WithLabelValues("emit").Inc()
		c.logger.ErrorContext(ctx, "emit payment event: giving up for now, the outcome will be fetched again",
			"payment_id", o.PaymentID, "user_id", o.UserID, "event_id", res.Event.ID(), "err", err)
		return err
	}
	c.m.events.WithLabelValues(strconv.FormatBool(res.Change != ledger.Applied)).Inc()
	return nil
}

// spanApply names the span of one outcome's application, child of the
// record's receive span (kotel): the payment's trace goes on through it to
// the event it emits.
const spanApply = "apply outcome"

// recordContext is ctx (its deadline, its cancellation) with the span of
// rec's Context, which kotel's receive hook set from the record's headers.
func recordContext(ctx context.Context, rec *kgo.Record) context.Context {
	return trace.ContextWithSpanContext(ctx, trace.SpanContextFromContext(rec.Context))
}

// parse decodes rec's outcome and checks it. A record that can never apply
// gets the reason and cause of its dead letter.
func parse(rec *kgo.Record) (o Outcome, reason string, cause error) {
	o, err := decode(rec.Value)
	if err != nil {
		return o, rejectUndecodable, err
	}
	if err := validate(o); err != nil {
		return o, rejectInvalid, err
	}
	if o.PaymentUID == uuid.Nil {
		return o, rejectStale, errors.New("outcome carries no payment_uid (made before migration 00004?): " +
			"it cannot be told from another database's payment with the same id")
	}
	return o, "", nil
}

// applied counts and logs what applying o did (res). A conflict is
// dead-lettered: the error says its dead letter could not be published.
func (c *Consumer) applied(ctx context.Context, rec *kgo.Record, o Outcome, res ledger.Result, attempts int, firstSeen time.Time) error {
	switch res.Change {
	case ledger.Applied:
		c.m.applied.WithLabelValues(string(o.Status)).Inc()
		c.m.observeFinal(o.Status, res.Event)
		c.logger.DebugContext(ctx, "outcome applied", "payment_id", o.PaymentID, "user_id", o.UserID,
			"from", res.From, "to", o.Status, "offset", rec.Offset)
	case ledger.Duplicate:
		c.m.noops.WithLabelValues("duplicate").Inc()
		c.logger.DebugContext(ctx, "outcome already applied", "payment_id", o.PaymentID, "user_id", o.UserID, "status", o.Status, "offset", rec.Offset)
	case ledger.OutOfOrder:
		if conflicting(res.From, o.Status) {
			return c.conflict(ctx, rec, o, res.From, attempts, firstSeen)
		}
		c.m.noops.WithLabelValues("out_of_order").Inc()
		c.logger.DebugContext(ctx, "outcome ignored: would not move the payment forward", "payment_id", o.PaymentID, "user_id", o.UserID,
			"current", res.From, "outcome", o.Status, "offset", rec.Offset)
	}
	return nil
}

// produceEvent produces one event and waits for Kafka to take it, retrying.
func (c *Consumer) produceEvent(ctx context.Context, ev *ledger.Event, payload []byte) error {
	return c.retry(ctx, "emit", func(ctx context.Context) error {
		// A fresh record per attempt: a record keeps the context of its
		// first produce. ctx holds the apply span: the event's publish
		// span (kotel) is its child.
		rec := &kgo.Record{Topic: kafka.TopicEvents, Key: kafka.UserKey(ev.UserID), Value: payload}
		return c.cl.ProduceSync(ctx, rec).FirstErr()
	})
}

// apply applies o in PostgreSQL, retrying transient errors, and returns
// what changed and how many attempts it took. Permanent errors (see
// permanentReason) are returned at once, class 22 and 23 errors once they
// recurred recurAttempts times in a row.
func (c *Consumer) apply(ctx context.Context, o Outcome) (ledger.Result, int, error) {
	var (
		res       ledger.Result
		attempts  int
		recurring int
	)
	err := c.retry(ctx, "apply", func(ctx context.Context) error {
		attempts++
		start := time.Now()
		r, err := applyOutcome(ctx, c.db, o)
		c.m.applyDuration.Observe(time.Since(start).Seconds())
		if reason := permanentReason(err); reason != "" {
			return backoff.Permanent(err)
		}
		switch postgres.Class(err) {
		case postgres.ClassDataException, postgres.ClassIntegrityConstraintViolation:
			if recurring++; recurring >= recurAttempts {
				return backoff.Permanent(&recurringError{err: err, attempts: recurring})
			}
		default:
			recurring = 0
		}
		res = r
		return err
	})
	return res, attempts, err
}

// applyOutcome applies o in one transaction with ledger.Apply: a
// redelivered outcome returns its recorded event again, one that would move
// the payment backwards changes nothing. An outcome that contradicts the
// payment's final status changes nothing either, but is recorded in
// outcome_conflicts in the same transaction. It returns
// ledger.ErrPaymentNotFound, ledger.ErrStale or ledger.ErrUserMismatch for
// outcomes that can never apply.
func applyOutcome(ctx context.Context, db *pgxpool.Pool, o Outcome) (ledger.Result, error) {
	var res ledger.Result
	err := postgres.InTx(ctx, db, func(tx pgx.Tx) error {
		t := transitionOf(o)
		var err error
		res, err = ledger.Apply(ctx, tx, t)
		if err != nil || res.Change != ledger.OutOfOrder || !conflicting(res.From, o.Status) {
			return err
		}
		return insertConflict(ctx, tx, t, res.From)
	})
	if err != nil {
		return ledger.Result{}, err
	}
	return res, nil
}

// transitionOf is the ledger change o asks for. o.UserID is never 0 once
// validated, so the ledger always checks that the payment is this user's.
func transitionOf(o Outcome) ledger.Transition {
	return ledger.Transition{
		PaymentID: o.PaymentID, PaymentUID: o.PaymentUID, UserID: o.UserID, To: o.Status, Actor: Actor, Reason: o.Reason,
	}
}

// insertConflict records in outcome_conflicts that t contradicts its
// payment's final status from. The payment is locked by the ledger in tx
// and t was checked against its uid and user: t names it.
func insertConflict(ctx context.Context, tx pgx.Tx, t ledger.Transition, from payment.Status) error {
	if _, err := tx.Exec(ctx, insertConflictSQL, t.PaymentID, t.PaymentUID, t.UserID, from, t.To, t.Reason, Actor); err != nil {
		return fmt.Errorf("record conflict of payment %d (%s, outcome %s): %w", t.PaymentID, from, t.To, err)
	}
	return nil
}

// insertConflictSQL records an outcome that contradicts a final payment,
// once per payment and outcome (a redelivery adds nothing).
const insertConflictSQL = `
INSERT INTO outcome_conflicts (payment_id, payment_uid, user_id, status, outcome, reason, actor)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (payment_id, outcome) DO NOTHING`

// conflicting reports whether outcome to contradicts the payment's status
// from: both final and different, succeeded after failed (the processor
// paid, the ledger failed) or failed after succeeded. Money may have moved
// wrongly, and only a person with the processor's statement can tell. A
// late processing or unknown after a final status contradicts nothing: the
// final status already says more.
func conflicting(from, to payment.Status) bool {
	return from.Final() && to.Final() && from != to
}

// retry runs op until it succeeds, returns a permanent error, RetryTimeout
// passes or ctx ends. An attempt that has started is not cut short by ctx:
// each runs with its own AttemptTimeout, so shutdown finishes in-flight work.
func (c *Consumer) retry(ctx context.Context, stage string, op func(context.Context) error) error {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = 50 * time.Millisecond
	bo.MaxInterval = 5 * time.Second
	bo.MaxElapsedTime = c.cfg.RetryTimeout
	return backoff.RetryNotify(func() error {
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.AttemptTimeout)
		defer cancel()
		return op(actx)
	}, backoff.WithContext(bo, ctx), func(err error, wait time.Duration) {
		c.m.errors.WithLabelValues(stage).Inc()
		c.logger.WarnContext(ctx, "retrying", "stage", stage, "err", err, "retry_in", wait.String())
	})
}

// abort stops the current poll's work after its in-flight attempts: a
// rebalance is waiting for the poll to finish.
func (c *Consumer) abort() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.abortPoll != nil {
		c.abortPoll()
	}
}

// commitPending commits the offsets of processed records not committed yet.
// A failed commit is logged and kept for the next commit or the revoke.
func (c *Consumer) commitPending(ctx context.Context) {
	c.mu.Lock()
	recs := make([]*kgo.Record, 0, len(c.pending))
	for _, r := range c.pending {
		recs = append(recs, r)
	}
	c.mu.Unlock()
	if len(recs) == 0 {
		return
	}
	if err := c.cl.CommitRecords(ctx, recs...); err != nil {
		c.m.errors.WithLabelValues("commit").Inc()
		c.logger.ErrorContext(ctx, "commit offsets", "records", len(recs), "err", err)
		return
	}
	c.mu.Lock()
	for _, r := range recs {
		tp := topicPartition{r.Topic, r.Partition}
		if c.pending[tp] == r {
			delete(c.pending, tp)
		}
	}
	c.mu.Unlock()
}

// onRevoked commits what was processed before the partitions go to another
// member. With BlockRebalanceOnPoll it runs between polls only.
func (c *Consumer) onRevoked(ctx context.Context, _ *kgo.Client, revoked map[string][]int32) {
	cctx, cancel := context.WithTimeout(ctx, c.cfg.AttemptTimeout)
	defer cancel()
	c.commitPending(cctx)
	c.forget(revoked)
}

// onLost forgets uncommitted progress on partitions that are already gone:
// their new owner re-reads from the last commit, and redelivery is a no-op.
func (c *Consumer) onLost(ctx context.Context, _ *kgo.Client, lost map[string][]int32) {
	c.logger.WarnContext(ctx, "partitions lost", "partitions", fmt.Sprint(lost))
	c.forget(lost)
}

func (c *Consumer) forget(parts map[string][]int32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for topic, ps := range parts {
		for _, p := range ps {
			tp := topicPartition{topic, p}
			delete(c.pending, tp)
			// Its new owner counts from now on; a stale value here would
			// keep an alert firing for a partition this member left.
			delete(c.deferrals, tp)
			c.m.headDeferrals.DeleteLabelValues(strconv.Itoa(int(p)))
		}
	}
}

// countDeferral counts one more deferral of rec, its partition's head
// record: one more in a row when the same record was deferred last time,
// the first otherwise. c.mu must be held.
func (c *Consumer) countDeferral(rec *kgo.Record) {
	tp := topicPartition{rec.Topic, rec.Partition}
	d := c.deferrals[tp]
	if d.offset != rec.Offset {
		d = headDeferrals{offset: rec.Offset}
	}
	d.n++
	c.deferrals[tp] = d
	c.m.headDeferrals.WithLabelValues(strconv.Itoa(int(rec.Partition))).Set(float64(d.n))
}

// resetDeferrals records that partition tp processed its head record.
// c.mu must be held.
func (c *Consumer) resetDeferrals(tp topicPartition) {
	delete(c.deferrals, tp)
	c.m.headDeferrals.WithLabelValues(strconv.Itoa(int(tp.partition))).Set(0)
}

// decode parses a PaymentOutcome record value (pkg/wire). An unrecognised
// status decodes to an empty Status, which validate rejects.
func decode(value []byte) (Outcome, error) {
	w, err := wire.DecodeOutcome(value)
	if err != nil {
		return Outcome{}, err
	}
	o := Outcome{
		PaymentID: w.PaymentID,
		UserID:    w.UserID,
		Status:    w.Status,
		Reason:    w.Reason,
	}
	if s := w.PaymentUID; s != "" {
		uid, err := payment.ParseUID(s)
		if err != nil {
			return o, fmt.Errorf("decode PaymentOutcome: %w", err)
		}
		o.PaymentUID = uid
	}
	return o, nil
}

func validate(o Outcome) error {
	var errs []error
	if o.PaymentID <= 0 {
		errs = append(errs, fmt.Errorf("payment_id %d is not positive", o.PaymentID))
	}
	if o.UserID <= 0 {
		errs = append(errs, fmt.Errorf("user_id %d is not positive", o.UserID))
	}
	if o.Status == "" {
		errs = append(errs, errors.New("status is unspecified or unknown to this version"))
	}
	return errors.Join(errs...)
}
