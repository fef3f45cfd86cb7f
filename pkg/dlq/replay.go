package dlq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/finsvc/finance/pkg/postgres"
)

// Limits of a replay's pace, in records per second.
const (
	DefaultRate = 10
	MaxRate     = 1000
)

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
}

// Outcomes of one dead letter in a replay.
const (
	OutcomeReplayed    = "replayed"
	OutcomeWouldReplay = "would_replay"
	OutcomeSkipped     = "skipped"
)

// ReplayedRecord is what a replay did with one dead letter.
type ReplayedRecord struct {
	Entry   Entry  `json:"entry"`
	Outcome string `json:"outcome"`
}

// ReplayResult is the audited result of a replay run.
type ReplayResult struct {
	ID       int64            `json:"replay_id"`
	Actor    string           `json:"actor"`
	DryRun   bool             `json:"dry_run"`
	Force    bool             `json:"force"`
	Rate     float64          `json:"rate"`
	Selected int              `json:"selected"`
	Replayed int              `json:"replayed"`
	Skipped  int              `json:"skipped"`
	Records  []ReplayedRecord `json:"records"`
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
	original_topic, original_partition, original_offset, payment_id, user_id, outcome)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`

const wasReplayedSQL = `
SELECT EXISTS (SELECT 1 FROM dlq_replayed_records
	WHERE dlq_topic = $1 AND dlq_partition = $2 AND dlq_offset = $3 AND outcome = 'replayed')`

// lockLetterSQL serialises concurrent replays of one dead letter, so that two
// operators replaying at once publish it once.
const lockLetterSQL = `SELECT pg_advisory_xact_lock(hashtextextended('dlq-replay:' || $1, 0))`

// Replay re-publishes the dead letters selected by r.Filter to their original
// topics, paced at r.Rate, and audits the run. Letters replayed by an earlier
// run are skipped unless r.Force. A dry run publishes nothing; it records
// which letters it would replay. The run is audited even when it stops early
// (ctx ended, Kafka failed): the result then holds what was done, and the
// error says why it stopped.
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
	res := ReplayResult{Actor: r.Actor, DryRun: r.DryRun, Force: r.Force, Rate: r.Rate, Records: []ReplayedRecord{}}
	entries, err := o.List(ctx, r.Filter)
	if err != nil {
		return ReplayResult{}, err
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
	var next time.Time
	runErr := func() error {
		for _, e := range entries {
			outcome, err := o.replayOne(ctx, res.ID, r, e, func(ctx context.Context) error {
				if wait := time.Until(next); wait > 0 {
					t := time.NewTimer(wait)
					defer t.Stop()
					select {
					case <-ctx.Done():
						return ctx.Err()
					case <-t.C:
					}
				}
				next = time.Now().Add(interval)
				return nil
			})
			if err != nil {
				return fmt.Errorf("replay %s: %w", e.ID(), err)
			}
			switch outcome {
			case OutcomeReplayed:
				res.Replayed++
				now := time.Now().UTC()
				e.ReplayedAt = &now
			case OutcomeSkipped:
				res.Skipped++
			}
			res.Records = append(res.Records, ReplayedRecord{Entry: e, Outcome: outcome})
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
		"selected", res.Selected, "replayed", res.Replayed, "skipped", res.Skipped)
	return res, nil
}

// replayOne decides, publishes and audits one dead letter in one
// transaction that holds the letter's lock. The publish happens before the
// commit: a crash in between publishes the record again on the next run,
// which idempotent consumers absorb; a record is never marked replayed
// without having been published.
func (o *Operator) replayOne(ctx context.Context, replayID int64, r ReplayRequest, e Entry, pace func(context.Context) error) (string, error) {
	var outcome string
	err := postgres.InTx(ctx, o.db, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, lockLetterSQL, e.ID()); err != nil {
			return fmt.Errorf("lock: %w", err)
		}
		var done bool
		if err := tx.QueryRow(ctx, wasReplayedSQL, e.Topic, e.Partition, e.Offset).Scan(&done); err != nil {
			return fmt.Errorf("read audit: %w", err)
		}
		switch {
		case done && !r.Force:
			outcome = OutcomeSkipped
		case r.DryRun:
			outcome = OutcomeWouldReplay
		default:
			if err := pace(ctx); err != nil {
				return err
			}
			if err := o.cl.ProduceSync(ctx, replayRecord(e)).FirstErr(); err != nil {
				return fmt.Errorf("publish to %s: %w", e.OriginalTopic, err)
			}
			outcome = OutcomeReplayed
		}
		_, err := tx.Exec(ctx, insertReplayedRecordSQL, replayID, e.Topic, e.Partition, e.Offset,
			e.OriginalTopic, e.OriginalPartition, e.OriginalOffset, e.PaymentID, e.UserID, outcome)
		if err != nil {
			return fmt.Errorf("audit: %w", err)
		}
		return nil
	})
	return outcome, err
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
