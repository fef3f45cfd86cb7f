package dlq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/finsvc/finance/pkg/clock"
	"github.com/finsvc/finance/pkg/kafka"
	"github.com/finsvc/finance/pkg/payment"
	"github.com/finsvc/finance/pkg/postgres"
	"github.com/finsvc/finance/pkg/wire"
)

// Limits of a replay's pace, in records per second.
const (
	DefaultRate = 10
	MaxRate     = 1000
)

// RequestedPayment is the payment a payments.requested record is about.
type RequestedPayment struct {
	ID  int64
	UID string // canonical text form; empty when the record carries none
}

// RequestDecoder reads the payment out of the value of a payments.requested
// record (a finance.v1.PaymentRequested): DecodeRequested for real
// records; tests may pass a stand-in.
type RequestDecoder func(value []byte) (RequestedPayment, error)

// DecodeRequested is the RequestDecoder of the real records: it reads a
// finance.v1.PaymentRequested through pkg/wire.
func DecodeRequested(value []byte) (RequestedPayment, error) {
	r, err := wire.DecodeRequested(value)
	if err != nil {
		return RequestedPayment{}, err
	}
	return RequestedPayment{ID: r.PaymentID, UID: r.PaymentUID}, nil
}

// ReplayRequest is one replay run.
type ReplayRequest struct {
	// Filter selects the dead letters, as List does.
	Filter Filter
	// Actor is who asked, for the audit: "token:<sub>" or "cli:<user>".
	Actor string
	// DryRun selects and audits without publishing anything.
	DryRun bool
	// Force replays dead letters that an earlier run replayed already.
	Force bool
	// Rate paces the publishes, records per second: DefaultRate when 0.
	Rate float64
	// KeyRetention is how long the processor keeps a payment's idempotency
	// key: a payments.requested letter whose payment is still open but was
	// created longer ago than this is not replayed (the processor could no
	// longer recognise a second send). payment.KeyRetention when 0.
	KeyRetention time.Duration
	// DecodeRequest reads the payment of a payments.requested letter. A run
	// that selects such a letter fails without it: the letter's payment
	// must be checked before the record is sent again.
	DecodeRequest RequestDecoder
}

// Outcomes of one dead letter in a replay. Every skip publishes nothing.
// Force repeats only OutcomeSkipped; the other skips hold whatever the
// request says.
const (
	OutcomeReplayed    = "replayed"
	OutcomeWouldReplay = "would_replay"
	// OutcomeSkipped: an earlier run replayed the letter already.
	OutcomeSkipped = "skipped"
	// OutcomeSkippedFinal: a payments.requested letter whose payment
	// already succeeded or failed.
	OutcomeSkippedFinal = "skipped_final"
	// OutcomeSkippedStale: a payments.requested letter that names no
	// payment this database holds under its id and uid (no uid, another
	// database's, from before a restore, undecodable).
	OutcomeSkippedStale = "skipped_stale"
	// OutcomeSkippedKeyExpired: a payments.requested letter whose open
	// payment was created longer ago than the key retention; it is left
	// for the reconciler.
	OutcomeSkippedKeyExpired = "skipped_key_expired"
	// OutcomeSkippedClaimed: a payments.requested letter whose payment the
	// dispatcher claimed for the processor's as-is API (dispatch_claims):
	// it may have been executed without an idempotency key, so a second
	// send may pay twice; it is left for the reconciler.
	OutcomeSkippedClaimed = "skipped_claimed"
)

// ReplayedRecord is what a replay did with one dead letter, and why.
type ReplayedRecord struct {
	Entry   Entry  `json:"entry"`
	Outcome string `json:"outcome"`
	// Reason says why, for humans; empty for a letter of a topic whose
	// consumer is idempotent.
	Reason string `json:"reason,omitempty"`
	// PaymentUID and PaymentStatus are the payment a payments.requested
	// letter names, as the replay found it (status empty: not found).
	PaymentUID    string `json:"payment_uid,omitempty"`
	PaymentStatus string `json:"payment_status,omitempty"`
}

// ReplayResult is the audited result of a replay run.
type ReplayResult struct {
	ID     int64   `json:"replay_id"`
	Actor  string  `json:"actor"`
	DryRun bool    `json:"dry_run"`
	Force  bool    `json:"force"`
	Rate   float64 `json:"rate"`
	// KeyRetention is the key retention the run judged by, e.g. "24h0m0s".
	KeyRetention string `json:"key_retention"`
	Selected     int    `json:"selected"`
	// Replayed counts the letters published (a dry run: none).
	Replayed int `json:"replayed"`
	// Skipped counts the letters not published for any reason.
	Skipped int `json:"skipped"`
	// Outcomes counts the letters per outcome.
	Outcomes map[string]int   `json:"outcomes"`
	Records  []ReplayedRecord `json:"records"`
}

// skippedOutcome reports whether outcome publishes nothing.
func skippedOutcome(outcome string) bool {
	return outcome != OutcomeReplayed && outcome != OutcomeWouldReplay
}

// Validate reports what is wrong with r, wrapping ErrInvalidFilter.
func (r ReplayRequest) Validate() error {
	var errs []error
	if err := r.Filter.Validate(); err != nil {
		errs = append(errs, err)
	}
	if r.Actor == "" {
		errs = append(errs, fmt.Errorf("%w: the replay needs an actor for its audit", ErrInvalidFilter))
	}
	if r.Rate < 0 || r.Rate > MaxRate || r.Rate != r.Rate {
		errs = append(errs, fmt.Errorf("%w: rate %v is not between 0 and %d records per second", ErrInvalidFilter, r.Rate, MaxRate))
	}
	if r.KeyRetention < 0 {
		errs = append(errs, fmt.Errorf("%w: key retention %s is negative", ErrInvalidFilter, r.KeyRetention))
	}
	return errors.Join(errs...)
}

const insertReplaySQL = `
INSERT INTO dlq_replays (actor, dry_run, force, filter, rate)
VALUES ($1, $2, $3, $4, $5)
RETURNING id`

const finishReplaySQL = `
UPDATE dlq_replays
SET selected = $2, replayed = $3, skipped = $4, error = $5, finished_at = now()
WHERE id = $1`

const insertReplayedRecordSQL = `
INSERT INTO dlq_replayed_records (replay_id, dlq_topic, dlq_partition, dlq_offset,
	original_topic, original_partition, original_offset, payment_id, user_id, outcome,
	reason, payment_uid)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`

// lastReplaySQL returns the latest run that replayed a dead letter, NULL if none.
const lastReplaySQL = `
SELECT max(replay_id) FROM dlq_replayed_records
WHERE dlq_topic = $1 AND dlq_partition = $2 AND dlq_offset = $3 AND outcome = 'replayed'`

// lockLetterSQL serialises concurrent replays of one dead letter, so that two
// operators replaying at once publish it once.
const lockLetterSQL = `SELECT pg_advisory_xact_lock(hashtextextended('dlq-replay:' || $1, 0))`

// lockPaymentSQL locks the payment a payments.requested letter names, by id
// and uid, until the replay's decision is published and recorded: a
// concurrent outcome, reconciliation or replay of it waits, and the replay
// judges the payment as it is, not as it was. It returns no row for a
// payment this database does not hold; claimed_at is the as-is dispatcher's
// claim, NULL when it never claimed the payment.
const lockPaymentSQL = `
SELECT p.status, p.created_at, now(), c.claimed_at
FROM payments p
LEFT JOIN dispatch_claims c ON c.payment_id = p.id
WHERE p.id = $1 AND p.uid = $2
FOR UPDATE OF p`

// Replay re-publishes the dead letters selected by r.Filter to their original
// topics, paced at r.Rate, and audits the run. Letters replayed by an earlier
// run are skipped unless r.Force. A payments.requested letter is published
// only when its payment is open, held under the record's id and uid, never
// claimed for the as-is API, and younger than r.KeyRetention (see
// checkRequest); Force does not change that. A dry run publishes nothing; it
// records what it would do and why. The run is audited even when it stops
// early (ctx ended, Kafka failed): the result then holds what was done, and
// the error says why it stopped.
//
// An empty r.Filter.Topic reads every DLQ topic; financectl and the admin
// route ask for it explicitly.
func (o *Operator) Replay(ctx context.Context, r ReplayRequest) (ReplayResult, error) {
	if err := r.Validate(); err != nil {
		return ReplayResult{}, err
	}
	if o.db == nil {
		return ReplayResult{}, errors.New("replay needs PostgreSQL for its audit")
	}
	if r.Rate == 0 {
		r.Rate = DefaultRate
	}
	if r.KeyRetention == 0 {
		r.KeyRetention = payment.KeyRetention
	}
	res := ReplayResult{Actor: r.Actor, DryRun: r.DryRun, Force: r.Force, Rate: r.Rate,
		KeyRetention: r.KeyRetention.String(), Outcomes: map[string]int{}, Records: []ReplayedRecord{}}
	entries, err := o.List(ctx, r.Filter)
	if err != nil {
		return ReplayResult{}, err
	}
	if r.DecodeRequest == nil {
		for _, e := range entries {
			if e.OriginalTopic == kafka.TopicRequested {
				return ReplayResult{}, fmt.Errorf("replay of %s selects %s, whose payment must be checked first, "+
					"but the request has no DecodeRequest", e.ID(), kafka.TopicRequested)
			}
		}
	}
	filter, err := json.Marshal(r.Filter)
	if err != nil {
		return ReplayResult{}, fmt.Errorf("encode filter: %w", err)
	}
	if err := o.db.QueryRow(ctx, insertReplaySQL, r.Actor, r.DryRun, r.Force, filter, r.Rate).Scan(&res.ID); err != nil {
		return ReplayResult{}, fmt.Errorf("audit replay: %w", err)
	}
	res.Selected = len(entries)

	interval := time.Duration(float64(time.Second) / r.Rate)
	var next time.Time // the earliest time of the next publish
	runErr := func() error {
		for _, e := range entries {
			if !r.DryRun {
				// Paced before the letter's transaction, so that no
				// lock is held while waiting; only a publish moves
				// next, so skips go at once.
				if err := clock.Sleep(ctx, time.Until(next)); err != nil {
					return fmt.Errorf("replay %s: %w", e.ID(), err)
				}
			}
			rr, err := o.replayOne(ctx, res.ID, r, e)
			if err != nil {
				return fmt.Errorf("replay %s: %w", e.ID(), err)
			}
			switch {
			case rr.Outcome == OutcomeReplayed:
				res.Replayed++
				now := time.Now()
				next = now.Add(interval)
				at := now.UTC()
				rr.Entry.ReplayedAt = &at
			case skippedOutcome(rr.Outcome):
				res.Skipped++
			}
			res.Outcomes[rr.Outcome]++
			res.Records = append(res.Records, rr)
		}
		return nil
	}()
	errText := ""
	if runErr != nil {
		errText = runErr.Error()
	}
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if _, err := o.db.Exec(fctx, finishReplaySQL, res.ID, res.Selected, res.Replayed, res.Skipped, errText); err != nil {
		runErr = errors.Join(runErr, fmt.Errorf("audit replay %d: %w", res.ID, err))
	}
	if runErr != nil {
		return res, runErr
	}
	o.logger.InfoContext(ctx, "dlq replay", "replay_id", res.ID, "actor", r.Actor, "dry_run", r.DryRun,
		"selected", res.Selected, "replayed", res.Replayed, "skipped", res.Skipped, "outcomes", res.Outcomes)
	return res, nil
}

// replayOne decides, publishes and audits one dead letter in one
// transaction that holds the letter's lock and, for a payments.requested
// letter, its payment's row lock. The publish happens before the commit: a
// crash in between publishes the record again on the next run, which
// idempotent consumers and the dispatch guard absorb; a record is never
// marked replayed without having been published.
func (o *Operator) replayOne(ctx context.Context, replayID int64, r ReplayRequest, e Entry) (ReplayedRecord, error) {
	var rr ReplayedRecord
	err := postgres.InTx(ctx, o.db, func(tx pgx.Tx) error {
		rr = ReplayedRecord{Entry: e}
		if _, err := tx.Exec(ctx, lockLetterSQL, e.ID()); err != nil {
			return fmt.Errorf("lock: %w", err)
		}
		var last *int64
		if err := tx.QueryRow(ctx, lastReplaySQL, e.Topic, e.Partition, e.Offset).Scan(&last); err != nil {
			return fmt.Errorf("read audit: %w", err)
		}
		var uid *string // the audit's payment_uid
		switch {
		case last != nil && !r.Force:
			rr.Outcome = OutcomeSkipped
			rr.Reason = fmt.Sprintf("already replayed by replay %d (force to repeat)", *last)
		case e.OriginalTopic == kafka.TopicRequested:
			c, err := checkRequest(ctx, tx, r, e.Value)
			if err != nil {
				return err
			}
			rr.Outcome, rr.Reason, rr.PaymentStatus = c.outcome, c.reason, c.status
			if c.payment.ID > 0 && rr.Entry.PaymentID == 0 {
				rr.Entry.PaymentID = c.payment.ID
			}
			if c.uid != "" {
				rr.PaymentUID, uid = c.uid, &c.uid
			}
		}
		if rr.Outcome == "" {
			if r.DryRun {
				rr.Outcome = OutcomeWouldReplay
			} else {
				if err := o.cl.ProduceSync(ctx, replayRecord(e)).FirstErr(); err != nil {
					return fmt.Errorf("publish to %s: %w", e.OriginalTopic, err)
				}
				rr.Outcome = OutcomeReplayed
			}
		}
		_, err := tx.Exec(ctx, insertReplayedRecordSQL, replayID, e.Topic, e.Partition, e.Offset,
			e.OriginalTopic, e.OriginalPartition, e.OriginalOffset, rr.Entry.PaymentID, e.UserID, rr.Outcome,
			rr.Reason, uid)
		if err != nil {
			return fmt.Errorf("audit: %w", err)
		}
		return nil
	})
	return rr, err
}

// requestCheck is checkRequest's verdict; an empty outcome lets the letter
// be replayed.
type requestCheck struct {
	outcome, reason string
	payment         RequestedPayment
	uid             string // the valid uid, "" when the record has none
	status          string // the payment's status, "" when not held
}

// checkRequest decides whether the payments.requested record value may be
// sent to the dispatcher again, within tx, locking its payment. Whatever
// replays a request, the processor must not execute its payment twice:
//
//   - a payment already succeeded or failed is never sent again;
//   - a record whose payment id and uid this database does not hold (or
//     that has no uid, or cannot be decoded) names no payment of ours;
//   - a payment the dispatcher claimed for the as-is API may have been
//     executed, without an idempotency key: a second send may pay twice;
//   - an open payment created longer ago than the key retention may have
//     been executed under a key the processor no longer keeps.
//
// Those are skipped, and the open ones are left for the reconciler, which
// resolves them from the processor's records. Any other open payment is
// sent again under the same key, which the processor still recognises.
func checkRequest(ctx context.Context, tx pgx.Tx, r ReplayRequest, value []byte) (requestCheck, error) {
	var c requestCheck
	p, err := r.DecodeRequest(value)
	if err != nil {
		c.outcome, c.reason = OutcomeSkippedStale, fmt.Sprintf("not a decodable payment request: %v", err)
		return c, nil
	}
	c.payment = p
	uid, err := payment.ParseUID(p.UID)
	switch {
	case p.UID == "":
		c.outcome = OutcomeSkippedStale
		c.reason = fmt.Sprintf("the record carries no payment_uid (made before migration 00004?): "+
			"it cannot be told from another database's payment %d", p.ID)
		return c, nil
	case err != nil:
		c.outcome = OutcomeSkippedStale
		c.reason = fmt.Sprintf("the record carries no valid payment_uid (%v): it cannot be told from another database's payment %d", err, p.ID)
		return c, nil
	}
	c.uid = uid.String()
	if p.ID <= 0 {
		c.outcome, c.reason = OutcomeSkippedStale, fmt.Sprintf("the record's payment id %d names no payment", p.ID)
		return c, nil
	}
	var (
		status       payment.Status
		created, now time.Time
		claimed      *time.Time
	)
	err = tx.QueryRow(ctx, lockPaymentSQL, p.ID, uid).Scan(&status, &created, &now, &claimed)
	if errors.Is(err, pgx.ErrNoRows) {
		c.outcome = OutcomeSkippedStale
		c.reason = fmt.Sprintf("the database holds no payment %d with uid %s: a record from before a restore, or of another database", p.ID, uid)
		return c, nil
	}
	if err != nil {
		return c, fmt.Errorf("lock payment %d: %w", p.ID, err)
	}
	c.status = string(status)
	age := now.Sub(created).Round(time.Second)
	switch {
	case status.Final():
		c.outcome = OutcomeSkippedFinal
		c.reason = fmt.Sprintf("payment %d is %s already: never sent again", p.ID, status)
	case claimed != nil:
		c.outcome = OutcomeSkippedClaimed
		c.reason = fmt.Sprintf("payment %d (%s) was claimed at %s for the processor's as-is API, which has no idempotency key: "+
			"it may have been executed, so it is left for the reconciler", p.ID, status, claimed.UTC().Format(time.RFC3339))
	case age > r.KeyRetention:
		c.outcome = OutcomeSkippedKeyExpired
		c.reason = fmt.Sprintf("payment %d (%s) was created %s ago, beyond the key retention %s: the processor may no longer know its key, "+
			"so it is left for the reconciler", p.ID, status, age, r.KeyRetention)
	default:
		c.reason = fmt.Sprintf("payment %d is %s, created %s ago: within the key retention %s of its key %s, "+
			"and never claimed for the as-is API", p.ID, status, age, r.KeyRetention, payment.ProcessorKey(uid))
	}
	return c, nil
}

// replayRecord is the original record of e, marked as a replay.
func replayRecord(e Entry) *kgo.Record {
	rec := &kgo.Record{Topic: e.OriginalTopic, Key: e.Key, Value: e.Value}
	for k, v := range e.Headers {
		if k == HeaderReplayedFrom {
			continue
		}
		rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: k, Value: []byte(v)})
	}
	rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: HeaderReplayedFrom, Value: []byte(e.ID())})
	return rec
}

const replayedAtSQL = `
SELECT l.topic, l.part, l.off, max(r.at)
FROM unnest($1::text[], $2::int[], $3::bigint[]) AS l (topic, part, off)
JOIN dlq_replayed_records r
  ON r.dlq_topic = l.topic AND r.dlq_partition = l.part AND r.dlq_offset = l.off AND r.outcome = 'replayed'
GROUP BY l.topic, l.part, l.off`

// markReplayed fills in ReplayedAt from the audit. Without a database it
// does nothing.
func (o *Operator) markReplayed(ctx context.Context, es []Entry) error {
	if o.db == nil || len(es) == 0 {
		return nil
	}
	topics := make([]string, len(es))
	parts := make([]int32, len(es))
	offs := make([]int64, len(es))
	idx := map[string]int{}
	for i, e := range es {
		topics[i], parts[i], offs[i] = e.Topic, e.Partition, e.Offset
		idx[e.ID()] = i
	}
	rows, err := o.db.Query(ctx, replayedAtSQL, topics, parts, offs)
	if err != nil {
		return fmt.Errorf("read replay audit: %w", err)
	}
	var (
		topic string
		part  int32
		off   int64
		at    time.Time
	)
	_, err = pgx.ForEachRow(rows, []any{&topic, &part, &off, &at}, func() error {
		if i, ok := idx[fmt.Sprintf("%s/%d/%d", topic, part, off)]; ok {
			t := at.UTC()
			es[i].ReplayedAt = &t
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("read replay audit: %w", err)
	}
	return nil
}
