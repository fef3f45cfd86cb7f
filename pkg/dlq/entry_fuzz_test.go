package dlq

import (
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/finsvc/finance/pkg/kafka"
)

// FuzzEntryOf: any dead letter the broker hands back, with any headers,
// is read without a panic into an Entry whose fields are in range: a
// header that is missing, malformed or out of range leaves its field at
// its default; the original topic is the one the letter's DLQ topic
// belongs to (a replay publishes there); and the entry, dead-lettered
// again by Record, reads back as itself.
//
// The headers are one []byte of frames: a length byte, the key, a length
// byte, the value (frameHeaders).
func FuzzEntryOf(f *testing.F) {
	good := frameHeaders(
		HeaderError, "payment 7 unknown", HeaderReason, "unknown_payment", HeaderAttempts, "3",
		HeaderFirstSeen, "2026-05-04T10:00:00.123456789Z", HeaderOriginalTopic, kafka.TopicOutcomes,
		HeaderOriginalPartition, "2", HeaderOriginalOffset, "17", HeaderSource, "status-consumer",
		HeaderPaymentID, "7", HeaderUserID, "3456", "traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	f.Add(kafka.DLQTopic(kafka.TopicOutcomes), int64(1_777_777_777_005), []byte("3456"), []byte(`{"payment_id":7}`), good)
	f.Add(kafka.DLQTopic(kafka.TopicRequested), int64(0), []byte("1"), []byte{0xff, 0}, []byte{})
	f.Add(kafka.DLQTopic(kafka.TopicEvents), int64(-1), []byte("-5"), []byte(nil), frameHeaders(
		HeaderAttempts, "99999999999999999999", HeaderPaymentID, "-7", HeaderUserID, "9223372036854775808"))
	f.Add(kafka.DLQTopic(kafka.TopicRequested), int64(253402300800000), []byte("12"), []byte("{}"), frameHeaders(
		HeaderOriginalTopic, kafka.TopicOutcomes, HeaderOriginalPartition, "-3", HeaderOriginalOffset, "-1"))
	f.Add(kafka.DLQTopic(kafka.TopicOutcomes), int64(1_777_777_777_005), []byte("x"), []byte("x"), frameHeaders(
		HeaderFirstSeen, "2026-05-04T10:00:00+01:00", HeaderAttempts, "+4", HeaderAttempts, "0x10",
		HeaderOriginalPartition, "2147483648", "dlq-unknown", "dropped", "", "empty key", "k", "1", "k", "2"))
	f.Add("payments.outcomes.dlq.dlq", int64(-62135596800001), []byte(" 42"), []byte("v"), []byte{200, 'a'})
	f.Fuzz(func(t *testing.T, topic string, timestamp int64, key, value, headers []byte) {
		if !strings.HasSuffix(topic, kafka.DLQSuffix) {
			topic += kafka.DLQSuffix // List and Get read DLQ topics only
		}
		// The broker's timestamp is the producer's: any milliseconds.
		r := &kgo.Record{Topic: topic, Partition: 3, Offset: 99, Timestamp: time.UnixMilli(timestamp),
			Key: key, Value: value, Headers: unframeHeaders(headers)}
		e := entryOf(r)

		if e.Topic != r.Topic || e.Partition != r.Partition || e.Offset != r.Offset || e.Timestamp.Location() != time.UTC ||
			!e.Timestamp.Equal(r.Timestamp) && !e.Timestamp.IsZero() || string(e.Key) != string(key) || string(e.Value) != string(value) {
			t.Fatalf("the letter's own fields changed: %+v from %+v", e, r)
		}
		// The gateway and the console serve entries as JSON.
		if _, err := json.Marshal(e); err != nil {
			t.Fatalf("the entry does not encode: %v", err)
		}
		if kafka.DLQTopic(e.OriginalTopic) != r.Topic {
			t.Fatalf("a letter of %s reads as from %q: a replay would publish it there", r.Topic, e.OriginalTopic)
		}
		values := func(k string) []string {
			var vs []string
			for _, h := range r.Headers {
				if h.Key == k {
					vs = append(vs, string(h.Value))
				}
			}
			return vs
		}
		// A number is its default or one of its headers' values, in range.
		isValue := func(name string, n int64) bool {
			return slices.ContainsFunc(values(name), func(v string) bool {
				m, err := strconv.ParseInt(v, 10, 64)
				return err == nil && m == n
			})
		}
		number := func(name string, got, def, min int64) {
			t.Helper()
			if got != def && (got < min || !isValue(name, got)) {
				t.Fatalf("%s read as %d from %q", name, got, values(name))
			}
		}
		number(HeaderAttempts, int64(e.Attempts), 0, 0)
		number(HeaderOriginalPartition, int64(e.OriginalPartition), -1, 0)
		number(HeaderOriginalOffset, e.OriginalOffset, -1, 0)
		number(HeaderPaymentID, e.PaymentID, 0, 1)
		if e.UserID != 0 && !isValue(HeaderUserID, e.UserID) {
			if id, err := kafka.ParseUserKey(key); err != nil || id != e.UserID {
				t.Fatalf("user id read as %d from %q and key %q", e.UserID, values(HeaderUserID), key)
			}
		}
		if e.UserID < 0 {
			t.Fatalf("user id read as %d from %q and key %q", e.UserID, values(HeaderUserID), key)
		}
		if !e.FirstSeen.IsZero() && !slices.ContainsFunc(values(HeaderFirstSeen), func(v string) bool {
			at, err := time.Parse(time.RFC3339Nano, v)
			return err == nil && at.Equal(e.FirstSeen)
		}) {
			t.Fatalf("first seen read as %v from %q", e.FirstSeen, values(HeaderFirstSeen))
		}
		for k := range e.Headers {
			if strings.HasPrefix(k, headerPrefix) {
				t.Fatalf("dlq- header %q kept among the original's", k)
			}
		}

		// Round trip: the entry's original record and letter, dead-lettered
		// again, read back as the entry.
		orig := &kgo.Record{Topic: e.OriginalTopic, Partition: e.OriginalPartition, Offset: e.OriginalOffset, Key: e.Key, Value: e.Value}
		for _, k := range slices.Sorted(maps.Keys(e.Headers)) {
			orig.Headers = append(orig.Headers, kgo.RecordHeader{Key: k, Value: []byte(e.Headers[k])})
		}
		again := Record(orig, Letter{Reason: e.Reason, Err: errors.New(e.Error), Attempts: e.Attempts, FirstSeen: e.FirstSeen,
			Source: e.Source, PaymentID: e.PaymentID, UserID: e.UserID})
		again.Partition, again.Offset, again.Timestamp = r.Partition, r.Offset, r.Timestamp
		if again.Topic != r.Topic {
			t.Fatalf("dead-lettered again to %s, not %s", again.Topic, r.Topic)
		}
		e2 := entryOf(again)
		if e.FirstSeen.IsZero() {
			e2.FirstSeen = e.FirstSeen // Record stamps a letter without one
		}
		if !e2.FirstSeen.Equal(e.FirstSeen) {
			t.Fatalf("first seen %v read back as %v", e.FirstSeen, e2.FirstSeen)
		}
		e2.FirstSeen = e.FirstSeen
		if diff := cmp.Diff(e, e2); diff != "" {
			t.Fatalf("round trip (-read +read again):\n%s", diff)
		}
	})
}

// frameHeaders frames key, value, ... as FuzzEntryOf's headers input.
func frameHeaders(kv ...string) []byte {
	var b []byte
	for _, s := range kv {
		b = append(b, byte(len(s)))
		b = append(b, s...)
	}
	return b
}

// unframeHeaders reads frameHeaders' frames; a frame cut short ends the
// list with what it holds.
func unframeHeaders(b []byte) []kgo.RecordHeader {
	next := func() (string, bool) {
		if len(b) == 0 {
			return "", false
		}
		n := min(int(b[0]), len(b)-1)
		s := string(b[1 : 1+n])
		b = b[1+n:]
		return s, true
	}
	var hs []kgo.RecordHeader
	for {
		k, ok := next()
		if !ok {
			return hs
		}
		v, _ := next()
		hs = append(hs, kgo.RecordHeader{Key: k, Value: []byte(v)})
	}
}
