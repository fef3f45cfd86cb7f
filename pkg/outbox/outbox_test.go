package outbox_test

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

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
