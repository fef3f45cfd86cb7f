package outbox_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/trace"

	"github.com/finsvc/finance/pkg/outbox"
	"github.com/finsvc/finance/pkg/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// TestInsertManyKeepsOrder writes records one by one and many at once, and
// wants them back in the order written, the order the relay publishes.
func TestInsertManyKeepsOrder(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t)
	ctx := context.Background()
	var want []outbox.Record
	for i := range 300 {
		want = append(want, outbox.Record{Topic: fmt.Sprintf("t%d", i%3), Key: []byte{byte(i)}, Payload: []byte(fmt.Sprint(i))})
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
	if err := outbox.Insert(ctx, tx, want[0].Topic, want[0].Key, want[0].Payload); err != nil {
		t.Fatal(err)
	}
	if err := outbox.InsertMany(ctx, tx, want[1:]); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}

	rows, _ := pool.Query(ctx, `SELECT topic, key, payload FROM outbox ORDER BY id`)
	got, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (outbox.Record, error) {
		var r outbox.Record
		err := row.Scan(&r.Topic, &r.Key, &r.Payload)
		return r, err
	})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("records (-want +got):\n%s", diff)
	}
}

// TestRecordsKeepTheirTraceParent: Insert stores the traceparent of the
// span in its context, InsertMany each record's own, and a context without
// a span stores NULL; the relay continues the trace from this column.
func TestRecordsKeepTheirTraceParent(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t)
	ctx := context.Background()
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36},
		SpanID:     trace.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7},
		TraceFlags: trace.FlagsSampled,
	})
	spanCtx := trace.ContextWithSpanContext(ctx, sc)
	const want = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
	if err := outbox.Insert(spanCtx, tx, "t", []byte("1"), []byte("with span")); err != nil {
		t.Fatal(err)
	}
	if err := outbox.Insert(ctx, tx, "t", []byte("1"), []byte("without")); err != nil {
		t.Fatal(err)
	}
	if err := outbox.InsertMany(ctx, tx, []outbox.Record{
		{Topic: "t", Key: []byte("1"), Payload: []byte("many with span"), TraceParent: outbox.NewTraceParent(spanCtx)},
		{Topic: "t", Key: []byte("1"), Payload: []byte("many without"), TraceParent: outbox.NewTraceParent(ctx)},
	}); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}

	rows, _ := pool.Query(ctx, `SELECT coalesce(traceparent, 'NULL') FROM outbox ORDER BY id`)
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{want, "NULL", want, "NULL"}, got); diff != "" {
		t.Errorf("traceparent per record (-want +got):\n%s", diff)
	}
}

// TestInsertManyWakesTheRelay: a listener on Channel, as the relay is, is
// notified when a transaction that inserted records commits, and not when
// it rolls back.
func TestInsertManyWakesTheRelay(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t)
	ctx := context.Background()
	listener, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Release()
	if _, err := listener.Exec(ctx, "LISTEN "+outbox.Channel); err != nil {
		t.Fatal(err)
	}
	notified := func() bool {
		t.Helper()
		wctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		n, err := listener.Conn().WaitForNotification(wctx)
		if err != nil {
			if wctx.Err() != nil {
				return false
			}
			t.Fatal(err)
		}
		return n.Channel == outbox.Channel
	}
	insert := func(commit bool) {
		t.Helper()
		tx, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
		if err := outbox.InsertMany(ctx, tx, []outbox.Record{{Topic: "t", Key: []byte{1}, Payload: []byte{2}}}); err != nil {
			t.Fatal(err)
		}
		if commit {
			if err := tx.Commit(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}

	insert(false)
	if notified() {
		t.Error("notified by a rolled-back insert")
	}
	insert(true)
	if !notified() {
		t.Error("not notified by a committed insert")
	}
}
