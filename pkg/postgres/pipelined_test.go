package postgres_test

import (
	"context"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/finsvc/finance/pkg/pgtest"
	"github.com/finsvc/finance/pkg/postgres"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// roundTrips counts what a connection sends: each query sent on its own and
// each batch is one round trip.
type roundTrips struct{ n atomic.Int64 }

func (r *roundTrips) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	r.n.Add(1)
	return ctx
}
func (r *roundTrips) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (r *roundTrips) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	r.n.Add(1)
	return ctx
}
func (r *roundTrips) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}
func (r *roundTrips) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData)     {}

// onePool opens a pool of one connection on a fresh database with a table
// t(v int unique), and counts its round trips.
func onePool(t *testing.T) (*pgxpool.Pool, *roundTrips) {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(pgtest.NewDB(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 1
	trips := &roundTrips{}
	cfg.ConnConfig.Tracer = trips
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, err := pool.Exec(context.Background(), `CREATE TABLE t (v int UNIQUE)`); err != nil {
		t.Fatal(err)
	}
	trips.n.Store(0)
	return pool, trips
}

func count(t *testing.T, pool *pgxpool.Pool) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM t`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestPipelinedTxCommitsInItsBatches: two batches are two round trips, BEGIN
// and COMMIT included, and what they wrote is committed.
func TestPipelinedTxCommitsInItsBatches(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, trips := onePool(t)
	tx, err := postgres.BeginPipelined(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	var first, last pgx.Batch
	first.Queue(`INSERT INTO t VALUES (1)`)
	last.Queue(`INSERT INTO t VALUES (2)`)
	if err := tx.Send(ctx, &first); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx, &last); err != nil {
		t.Fatal(err)
	}
	if got := trips.n.Load(); got != 2 {
		t.Errorf("%d round trips, want 2 (pgx.Tx takes 4: BEGIN and COMMIT on their own)", got)
	}
	tx.Close() // after Commit: nothing sent
	if got := trips.n.Load(); got != 2 {
		t.Errorf("Close after Commit sent %d statements", got-2)
	}
	if n := count(t, pool); n != 2 {
		t.Errorf("%d rows committed, want 2", n)
	}
}

// TestPipelinedTxRollsBack: a failed statement in any batch, the last one
// included, leaves nothing written, and the pool's only connection is fit
// for the next transaction.
func TestPipelinedTxRollsBack(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := onePool(t)
	for _, failIn := range []string{"first", "commit"} {
		tx, err := postgres.BeginPipelined(ctx, pool)
		if err != nil {
			t.Fatal(err)
		}
		var first, last pgx.Batch
		first.Queue(`INSERT INTO t VALUES (1)`)
		last.Queue(`INSERT INTO t VALUES (2)`)
		if failIn == "first" {
			first.Queue(`INSERT INTO t VALUES (1)`) // unique violation
		} else {
			last.Queue(`INSERT INTO t VALUES (2)`)
		}
		err = tx.Send(ctx, &first)
		if err == nil {
			err = tx.Commit(ctx, &last)
		}
		if err == nil || !strings.Contains(err.Error(), "23505") {
			t.Errorf("failing in the %s batch: err = %v, want the unique violation", failIn, err)
		}
		tx.Close()
		if n := count(t, pool); n != 0 {
			t.Errorf("failing in the %s batch: %d rows committed, want 0", failIn, n)
		}
	}
}

// TestPipelinedTxCommitRefusesAnAbortedTransaction: a COMMIT after an error
// that the caller ignored answers ROLLBACK, and Commit reports it.
func TestPipelinedTxCommitRefusesAnAbortedTransaction(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := onePool(t)
	tx, err := postgres.BeginPipelined(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	var first pgx.Batch
	first.Queue(`INSERT INTO t VALUES (1)`)
	first.Queue(`SELECT 1/0`)
	if err := tx.Send(ctx, &first); err == nil {
		t.Fatal("division by zero: no error")
	}
	if err := tx.Commit(ctx, &pgx.Batch{}); err == nil || !strings.Contains(err.Error(), "had failed") {
		t.Errorf("Commit after a failed batch: err = %v, want the transaction refused", err)
	}
	tx.Close()
	if n := count(t, pool); n != 0 {
		t.Errorf("%d rows committed, want 0", n)
	}
}

// TestPipelinedTxCancelled: a transaction whose context ends mid-way writes
// nothing, and the pool still serves the next caller.
func TestPipelinedTxCancelled(t *testing.T) {
	t.Parallel()
	pool, _ := onePool(t)
	ctx, cancel := context.WithCancel(context.Background())
	tx, err := postgres.BeginPipelined(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	var first, last pgx.Batch
	first.Queue(`INSERT INTO t VALUES (1)`)
	if err := tx.Send(ctx, &first); err != nil {
		t.Fatal(err)
	}
	cancel()
	last.Queue(`INSERT INTO t VALUES (2)`)
	if err := tx.Commit(ctx, &last); err == nil {
		t.Fatal("Commit with a cancelled context: no error")
	}
	tx.Close()
	if n := count(t, pool); n != 0 {
		t.Errorf("%d rows committed, want 0", n)
	}
}
