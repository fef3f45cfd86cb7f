// Package dlq is the pipeline's dead-letter queue. A record that can never be
// processed (undecodable, about an unknown payment, refused by a constraint,
// out of retry budget) is published to "<topic>.dlq" (kafka.DLQTopic) with
// headers saying why, and only then is its offset committed: it is never
// dropped, and it never blocks its partition. Operators list, read and replay
// dead letters with financectl dlq and the gateway's /v1/admin/dlq routes,
// both through Operator.
//
// # Publishing
//
// A consumer that meets a poison record builds a Letter and publishes it
// before it commits the record's offset:
//
//	l := dlq.Letter{Reason: "undecodable", Err: err, Attempts: 1, FirstSeen: start,
//		Source: "status-consumer"}
//	if err := dlq.Publish(ctx, cl, rec, l); err != nil {
//		return err // do not commit rec's offset: it is fetched and tried again
//	}
//
// A transactional consumer (a kgo.GroupTransactSession, as in the dispatcher)
// produces dlq.Record(rec, l) inside its transaction instead, so the dead
// letter and the consumed offsets commit or abort together:
//
//	sess.Produce(ctx, dlq.Record(rec, l), nil)
//
// The dead letter keeps the original key, value and headers; it is keyed as
// the original, so it lands in the DLQ partition of the same user. Headers
// (all strings): dlq-error, dlq-reason, dlq-attempts, dlq-first-seen
// (RFC 3339, UTC), dlq-original-topic, dlq-original-partition,
// dlq-original-offset, dlq-source, and, when the publisher knows them,
// dlq-payment-id and dlq-user-id, which the payment and user filters use.
//
// # Operating
//
//	op, err := dlq.NewOperator(brokers, pool, logger)
//	entries, err := op.List(ctx, dlq.Filter{UserID: 7})
//	e, err := op.Get(ctx, "payments.outcomes.dlq", 3, 17)
//	res, err := op.Replay(ctx, dlq.ReplayRequest{Filter: f, Actor: "cli:alice", Rate: 10,
//		DecodeRequest: decode})
//
// Replay re-publishes each selected dead letter's original key, value and
// headers to its original topic, paced at Rate records per second. Every run
// is audited in PostgreSQL (tables dlq_replays and dlq_replayed_records,
// migrations 00002 and 00006): who, when, the filter, dry run or not, and
// what happened to each record and why. A dead letter replayed once is
// skipped by later runs unless Force is set. The consumers of
// payments.outcomes and payments.events are idempotent, so replaying their
// records changes nothing twice. A payments.requested record may make the
// processor execute a payment, so it is re-sent only when its payment, read
// under its row lock, is open, held under the record's id and uid, never
// claimed for the as-is API and younger than the processor's key retention;
// otherwise it is skipped (skipped_final, skipped_stale, skipped_claimed,
// skipped_key_expired), whatever Force says. A crash between the publish and
// the audit row can only publish a record twice, never lose it.
package dlq

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/finsvc/finance/pkg/kafka"
)

// The headers of a dead letter.
const (
	HeaderError             = "dlq-error"
	HeaderReason            = "dlq-reason"
	HeaderAttempts          = "dlq-attempts"
	HeaderFirstSeen         = "dlq-first-seen"
	HeaderOriginalTopic     = "dlq-original-topic"
	HeaderOriginalPartition = "dlq-original-partition"
	HeaderOriginalOffset    = "dlq-original-offset"
	HeaderSource            = "dlq-source"
	HeaderPaymentID         = "dlq-payment-id"
	HeaderUserID            = "dlq-user-id"
	// HeaderReplayedFrom is set on a replayed record: "<dlq topic>/<partition>/<offset>".
	// It is not a dlq- header, so it stays on the record if it dies again.
	HeaderReplayedFrom = "replayed-from"
)

const headerPrefix = "dlq-"

// Letter says why a record is dead.
type Letter struct {
	// Reason is a short machine-readable class, e.g. "undecodable",
	// "unknown_payment", "retry_budget_spent".
	Reason string
	// Err is what went wrong, for humans.
	Err error
	// Attempts is how many times the record was tried.
	Attempts int
	// FirstSeen is when the publisher first saw the record.
	FirstSeen time.Time
	// Source names the service that gave up on the record.
	Source string
	// PaymentID and UserID are what the record is about, 0 when unknown.
	PaymentID, UserID int64
}

// Record returns the dead letter of rec: rec's key, value and headers (less
// any dlq- headers of an earlier death) on kafka.DLQTopic(rec.Topic), plus
// the headers of l. rec itself is not changed.
func Record(rec *kgo.Record, l Letter) *kgo.Record {
	errText := "unknown error"
	if l.Err != nil {
		errText = l.Err.Error()
	}
	first := l.FirstSeen
	if first.IsZero() {
		first = time.Now()
	}
	headers := make([]kgo.RecordHeader, 0, len(rec.Headers)+10)
	for _, h := range rec.Headers {
		if !strings.HasPrefix(h.Key, headerPrefix) {
			headers = append(headers, h)
		}
	}
	add := func(k, v string) { headers = append(headers, kgo.RecordHeader{Key: k, Value: []byte(v)}) }
	add(HeaderError, errText)
	add(HeaderReason, l.Reason)
	add(HeaderAttempts, strconv.Itoa(l.Attempts))
	add(HeaderFirstSeen, first.UTC().Format(time.RFC3339Nano))
	add(HeaderOriginalTopic, rec.Topic)
	add(HeaderOriginalPartition, strconv.FormatInt(int64(rec.Partition), 10))
	add(HeaderOriginalOffset, strconv.FormatInt(rec.Offset, 10))
	add(HeaderSource, l.Source)
	if l.PaymentID > 0 {
		add(HeaderPaymentID, strconv.FormatInt(l.PaymentID, 10))
	}
	if l.UserID > 0 {
		add(HeaderUserID, strconv.FormatInt(l.UserID, 10))
	}
	return &kgo.Record{
		Topic:   kafka.DLQTopic(rec.Topic),
		Key:     rec.Key,
		Value:   rec.Value,
		Headers: headers,
	}
}

// Publish produces the dead letter of rec on cl and waits for the broker's
// acknowledgement. Commit rec's offset only after it returns nil.
func Publish(ctx context.Context, cl *kgo.Client, rec *kgo.Record, l Letter) error {
	dl := Record(rec, l)
	if err := cl.ProduceSync(ctx, dl).FirstErr(); err != nil {
		return fmt.Errorf("dead-letter %s/%d/%d to %s: %w", rec.Topic, rec.Partition, rec.Offset, dl.Topic, err)
	}
	return nil
}

// Entry is a dead letter as read back from its DLQ topic.
type Entry struct {
	// Where the dead letter is.
	Topic     string    `json:"topic"`
	Partition int32     `json:"partition"`
	Offset    int64     `json:"offset"`
	Timestamp time.Time `json:"dead_lettered_at"`
	// Where the record came from and why it died.
	OriginalTopic     string    `json:"original_topic"`
	OriginalPartition int32     `json:"original_partition"`
	OriginalOffset    int64     `json:"original_offset"`
	Error             string    `json:"error"`
	Reason            string    `json:"reason"`
	Attempts          int       `json:"attempts"`
	FirstSeen         time.Time `json:"first_seen"`
	Source            string    `json:"source"`
	PaymentID         int64     `json:"payment_id,omitempty"`
	UserID            int64     `json:"user_id,omitempty"`
	// The original record.
	Key     []byte            `json:"key"`
	Value   []byte            `json:"value"`
	Headers map[string]string `json:"headers,omitempty"` // the original's, without dlq- headers
	// ReplayedAt is when a replay last re-published this dead letter; nil if never.
	ReplayedAt *time.Time `json:"replayed_at,omitempty"`
}

// ID is the dead letter's address, "<topic>/<partition>/<offset>".
func (e Entry) ID() string {
	return fmt.Sprintf("%s/%d/%d", e.Topic, e.Partition, e.Offset)
}

// entryOf reads a dead letter. A header that is missing, malformed or out
// of range leaves its field at its default; the record is still listed.
// The letter's DLQ topic, not its dlq-original-topic header, says where it
// came from, and so where a replay publishes it; a broker timestamp
// outside the years 0 to 9999 reads as zero (JSON cannot carry it).
func entryOf(r *kgo.Record) Entry {
	e := Entry{
		Topic:             r.Topic,
		Partition:         r.Partition,
		Offset:            r.Offset,
		Timestamp:         jsonTime(r.Timestamp.UTC()),
		OriginalTopic:     strings.TrimSuffix(r.Topic, kafka.DLQSuffix),
		OriginalPartition: -1,
		OriginalOffset:    -1,
		Key:               r.Key,
		Value:             r.Value,
	}
	// number reads a header's integer, ok only within [min, max].
	number := func(v string, min, max int64) (int64, bool) {
		n, err := strconv.ParseInt(v, 10, 64)
		return n, err == nil && n >= min && n <= max
	}
	for _, h := range r.Headers {
		v := string(h.Value)
		switch h.Key {
		case HeaderError:
			e.Error = v
		case HeaderReason:
			e.Reason = v
		case HeaderAttempts:
			if n, ok := number(v, 0, math.MaxInt); ok {
				e.Attempts = int(n)
			}
		case HeaderFirstSeen:
			if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
				e.FirstSeen = jsonTime(t)
			}
		case HeaderOriginalTopic:
			// Not read: Record writes the topic the DLQ topic names, and
			// one naming another would send a replay there.
		case HeaderOriginalPartition:
			if p, ok := number(v, 0, math.MaxInt32); ok {
				e.OriginalPartition = int32(p)
			}
		case HeaderOriginalOffset:
			if o, ok := number(v, 0, math.MaxInt64); ok {
				e.OriginalOffset = o
			}
		case HeaderSource:
			e.Source = v
		case HeaderPaymentID:
			if id, ok := number(v, 1, math.MaxInt64); ok {
				e.PaymentID = id
			}
		case HeaderUserID:
			if id, ok := number(v, 1, math.MaxInt64); ok {
				e.UserID = id
			}
		default:
			if strings.HasPrefix(h.Key, headerPrefix) {
				continue
			}
			if e.Headers == nil {
				e.Headers = map[string]string{}
			}
			e.Headers[h.Key] = v
		}
	}
	if e.UserID == 0 {
		// Records are keyed by user: a letter without the header still
		// answers the user filter when its key is a user id.
		if id, err := kafka.ParseUserKey(r.Key); err == nil && id > 0 {
			e.UserID = id
		}
	}
	return e
}

// jsonTime is t, or the zero time when t's year (in UTC, as Record writes
// it, and in its own zone, as JSON does) is outside 0 to 9999.
func jsonTime(t time.Time) time.Time {
	if y, yu := t.Year(), t.UTC().Year(); y < 0 || y > 9999 || yu < 0 || yu > 9999 {
		return time.Time{}
	}
	return t
}

// Errors of the operator functions.
var (
	// ErrNotFound means no dead letter exists at the requested address.
	ErrNotFound = errors.New("dead letter not found")
	// ErrUnknownTopic means the topic is neither a pipeline topic nor its DLQ.
	ErrUnknownTopic = errors.New("unknown topic")
	// ErrInvalidFilter means a filter or replay request cannot be run as given.
	ErrInvalidFilter = errors.New("invalid filter")
)

// Limits of a Filter.
const (
	DefaultLimit = 100
	MaxLimit     = 10000
)

// Filter selects dead letters. Zero fields match everything.
type Filter struct {
	// Topic is a pipeline topic or its DLQ topic ("payments.outcomes" or
	// "payments.outcomes.dlq"); empty: every DLQ topic.
	Topic     string `json:"topic,omitempty"`
	PaymentID int64  `json:"payment_id,omitempty"`
	UserID    int64  `json:"user_id,omitempty"`
	// Since and Until bound when the record was dead-lettered (the DLQ
	// record's timestamp): Since inclusive, Until exclusive.
	Since time.Time `json:"since,omitzero"`
	Until time.Time `json:"until,omitzero"`
	// Error matches, case-insensitively, a substring of the error or the reason.
	Error string `json:"error,omitempty"`
	// Limit bounds the entries returned, oldest first: DefaultLimit when 0,
	// at most MaxLimit.
	Limit int `json:"limit,omitempty"`
	// At, when set, selects only the dead letter at this partition and
	// offset of Topic's DLQ (Topic is then required): the console replays
	// one letter by its address. No letter there selects nothing.
	At *Address `json:"at,omitempty"`
}

// Address is a dead letter's partition and offset in its DLQ topic.
type Address struct {
	Partition int32 `json:"partition"`
	Offset    int64 `json:"offset"`
}

// Validate reports what is wrong with f, wrapping ErrInvalidFilter or ErrUnknownTopic.
func (f Filter) Validate() error {
	var errs []error
	if f.Topic != "" {
		if _, err := dlqTopics(f.Topic); err != nil {
			errs = append(errs, err)
		}
	}
	if f.PaymentID < 0 {
		errs = append(errs, fmt.Errorf("%w: payment id %d is negative", ErrInvalidFilter, f.PaymentID))
	}
	if f.UserID < 0 {
		errs = append(errs, fmt.Errorf("%w: user id %d is negative", ErrInvalidFilter, f.UserID))
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Since.Before(f.Until) {
		errs = append(errs, fmt.Errorf("%w: since %s is not before until %s", ErrInvalidFilter,
			f.Since.Format(time.RFC3339), f.Until.Format(time.RFC3339)))
	}
	if f.Limit < 0 || f.Limit > MaxLimit {
		errs = append(errs, fmt.Errorf("%w: limit %d is not between 1 and %d", ErrInvalidFilter, f.Limit, MaxLimit))
	}
	if f.At != nil {
		if f.Topic == "" {
			errs = append(errs, fmt.Errorf("%w: an address (partition %d, offset %d) needs its topic", ErrInvalidFilter, f.At.Partition, f.At.Offset))
		}
		if f.At.Partition < 0 || f.At.Offset < 0 {
			errs = append(errs, fmt.Errorf("%w: partition %d and offset %d must not be negative", ErrInvalidFilter, f.At.Partition, f.At.Offset))
		}
	}
	return errors.Join(errs...)
}

func (f Filter) limit() int {
	if f.Limit == 0 {
		return DefaultLimit
	}
	return f.Limit
}

// match reports whether e passes every field of f but Topic, Since and Limit,
// which the reader applies itself.
func (f Filter) match(e Entry) bool {
	switch {
	case f.PaymentID != 0 && e.PaymentID != f.PaymentID:
		return false
	case f.UserID != 0 && e.UserID != f.UserID:
		return false
	case !f.Since.IsZero() && e.Timestamp.Before(f.Since):
		return false
	case !f.Until.IsZero() && !e.Timestamp.Before(f.Until):
		return false
	case f.Error != "":
		want := strings.ToLower(f.Error)
		return strings.Contains(strings.ToLower(e.Error), want) || strings.Contains(strings.ToLower(e.Reason), want)
	}
	return true
}

// dlqTopics resolves a filter's topic to the DLQ topics to read.
func dlqTopics(topic string) ([]string, error) {
	if topic == "" {
		return kafka.DLQTopics(), nil
	}
	for _, t := range kafka.Topics() {
		if topic == t || topic == kafka.DLQTopic(t) {
			return []string{kafka.DLQTopic(t)}, nil
		}
	}
	return nil, fmt.Errorf("%w %q: want one of %s or its %s topic", ErrUnknownTopic, topic,
		strings.Join(kafka.Topics(), ", "), kafka.DLQSuffix)
}
