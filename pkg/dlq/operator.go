package dlq

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/finsvc/finance/pkg/kafka"
)

// Operator lists, reads and replays dead letters. It is safe for concurrent
// use. Create it with NewOperator and Close it.
type Operator struct {
	brokers []string
	opts    []kgo.Opt // every client's extra options: an external cluster's SASL and TLS
	logger  *slog.Logger
	cl      *kgo.Client   // admin requests and replay produces
	db      *pgxpool.Pool // replay audit; nil: List shows no replay times and Replay fails
}

// NewOperator returns an Operator on brokers that audits replays in db
// (migrations 00002 and 00006 applied). opts go to every client it makes:
// an external cluster's SASL and TLS (kafka.SecurityOpts).
func NewOperator(brokers []string, db *pgxpool.Pool, logger *slog.Logger, opts ...kgo.Opt) (*Operator, error) {
	cl, err := kafka.NewClient(brokers, logger, append([]kgo.Opt{
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(0),
	}, opts...)...)
	if err != nil {
		return nil, err
	}
	return &Operator{brokers: brokers, opts: opts, logger: logger, cl: cl, db: db}, nil
}

// Close closes the Operator's Kafka client.
func (o *Operator) Close() { o.cl.Close() }

// Ping checks that a broker answers.
func (o *Operator) Ping(ctx context.Context) error { return kafka.Ping(ctx, o.cl) }

// span is the part of one DLQ partition to read: [start, end).
type span struct {
	topic      string
	partition  int32
	start, end int64
}

// spans returns, per partition of topics, the committed records from the
// log start (or the first one at or after since) to the last stable offset;
// with f.At, only that record's span.
// Topics that do not exist have no spans.
func (o *Operator) spans(ctx context.Context, topics []string, f Filter) ([]span, error) {
	adm := kadm.NewClient(o.cl)
	starts, err := adm.ListStartOffsets(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("list start offsets of %v: %w", topics, err)
	}
	ends, err := adm.ListCommittedOffsets(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("list end offsets of %v: %w", topics, err)
	}
	var after kadm.ListedOffsets
	if !f.Since.IsZero() {
		if after, err = adm.ListOffsetsAfterMilli(ctx, f.Since.UnixMilli(), topics...); err != nil {
			return nil, fmt.Errorf("list offsets after %s: %w", f.Since, err)
		}
	}
	var out []span
	var errs []error
	starts.Each(func(s kadm.ListedOffset) {
		if errors.Is(s.Err, kerr.UnknownTopicOrPartition) {
			return
		}
		if s.Err != nil {
			errs = append(errs, fmt.Errorf("start offset of %s/%d: %w", s.Topic, s.Partition, s.Err))
			return
		}
		e, ok := ends.Lookup(s.Topic, s.Partition)
		if !ok || e.Err != nil {
			errs = append(errs, fmt.Errorf("end offset of %s/%d: %v", s.Topic, s.Partition, e.Err))
			return
		}
		sp := span{topic: s.Topic, partition: s.Partition, start: s.Offset, end: e.Offset}
		if a, ok := after.Lookup(s.Topic, s.Partition); ok && a.Err == nil && a.Offset > sp.start {
			sp.start = a.Offset
		}
		if at := f.At; at != nil {
			// One letter: only its own offset, if the partition still holds it.
			if at.Partition != sp.partition || at.Offset < sp.start || at.Offset >= sp.end {
				return
			}
			sp.start, sp.end = at.Offset, at.Offset+1
		}
		if sp.start < sp.end {
			out = append(out, sp)
		}
	})
	return out, errors.Join(errs...)
}

// read consumes spans and calls fn with each committed data record, until
// every span is read or fn returns false for its partition (stop reading it).
func (o *Operator) read(ctx context.Context, spans []span, fn func(*kgo.Record) (more bool)) error {
	if len(spans) == 0 {
		return nil
	}
	parts := map[string]map[int32]kgo.Offset{}
	left := map[string]map[int32]int64{} // the last offset still to read, per partition
	for _, s := range spans {
		if parts[s.topic] == nil {
			parts[s.topic] = map[int32]kgo.Offset{}
			left[s.topic] = map[int32]int64{}
		}
		parts[s.topic][s.partition] = kgo.NewOffset().At(s.start)
		left[s.topic][s.partition] = s.end - 1
	}
	cl, err := kafka.NewClient(o.brokers, o.logger, append([]kgo.Opt{
		kgo.ConsumePartitions(parts),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Control records make the last offset before the stable end
		// visible even when it closes a transaction, so a partition
		// is known to be read to its end.
		kgo.KeepControlRecords(),
	}, o.opts...)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	remaining := len(spans)
	for remaining > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("read dead letters: %w", err)
		}
		var ferr error
		fs.EachError(func(t string, p int32, err error) {
			ferr = errors.Join(ferr, fmt.Errorf("fetch %s/%d: %w", t, p, err))
		})
		if ferr != nil {
			return ferr
		}
		fs.EachRecord(func(r *kgo.Record) {
			last, ok := left[r.Topic][r.Partition]
			if !ok || r.Offset > last {
				return // done with this partition already
			}
			more := true
			if !r.Attrs.IsControl() {
				more = fn(r)
			}
			if r.Offset == last || !more {
				delete(left[r.Topic], r.Partition)
				cl.PauseFetchPartitions(map[string][]int32{r.Topic: {r.Partition}})
				remaining--
			}
		})
	}
	return nil
}

// List returns the dead letters that match f, oldest first (by the time they
// were dead-lettered, then address), at most f's limit.
func (o *Operator) List(ctx context.Context, f Filter) ([]Entry, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	topics, _ := dlqTopics(f.Topic)
	spans, err := o.spans(ctx, topics, f)
	if err != nil {
		return nil, err
	}
	limit := f.limit()
	var out []Entry
	perPartition := map[string]map[int32]int{}
	err = o.read(ctx, spans, func(r *kgo.Record) bool {
		e := entryOf(r)
		if !f.match(e) {
			return true
		}
		out = append(out, e)
		if perPartition[r.Topic] == nil {
			perPartition[r.Topic] = map[int32]int{}
		}
		perPartition[r.Topic][r.Partition]++
		// A partition's later letters cannot be among the oldest limit.
		return perPartition[r.Topic][r.Partition] < limit
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		switch {
		case !a.Timestamp.Equal(b.Timestamp):
			return a.Timestamp.Before(b.Timestamp)
		case a.Topic != b.Topic:
			return a.Topic < b.Topic
		case a.Partition != b.Partition:
			return a.Partition < b.Partition
		}
		return a.Offset < b.Offset
	})
	if len(out) > limit {
		out = out[:limit]
	}
	if err := o.markReplayed(ctx, out); err != nil {
		return nil, err
	}
	return out, nil
}

// Get returns the dead letter at topic (a pipeline topic or its DLQ),
// partition and offset, or ErrNotFound.
func (o *Operator) Get(ctx context.Context, topic string, partition int32, offset int64) (Entry, error) {
	topics, err := dlqTopics(topic)
	if err != nil {
		return Entry{}, err
	}
	addr := fmt.Sprintf("%s/%d/%d", topics[0], partition, offset)
	spans, err := o.spans(ctx, topics, Filter{})
	if err != nil {
		return Entry{}, err
	}
	var sp *span
	for i := range spans {
		if spans[i].partition == partition && offset >= spans[i].start && offset < spans[i].end {
			sp = &spans[i]
		}
	}
	if sp == nil {
		return Entry{}, fmt.Errorf("%s: %w", addr, ErrNotFound)
	}
	var found *Entry
	one := *sp
	one.start = offset
	err = o.read(ctx, []span{one}, func(r *kgo.Record) bool {
		if r.Offset == offset {
			e := entryOf(r)
			found = &e
		}
		return false
	})
	if err != nil {
		return Entry{}, err
	}
	if found == nil {
		// An aborted record or a transaction marker: no dead letter there.
		return Entry{}, fmt.Errorf("%s: %w", addr, ErrNotFound)
	}
	es := []Entry{*found}
	if err := o.markReplayed(ctx, es); err != nil {
		return Entry{}, err
	}
	return es[0], nil
}
