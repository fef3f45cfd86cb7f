package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// PipelinedTx is a transaction run as batches on one connection, whose BEGIN
// goes out with its first batch and whose COMMIT with its last. pgx.Tx sends
// each of them on its own, so a transaction of n batches costs n+2 round
// trips; this one costs n. On a hot path that matters more than it looks:
// each round trip is a write and a read on both sides and a wake-up of the
// backend, and at low rates a transaction holds one or two requests' work.
//
// Use it as:
//
//	tx, err := postgres.BeginPipelined(ctx, pool)
//	if err != nil { ... }
//	defer tx.Close()
//	... tx.Send(ctx, &first) ... tx.Commit(ctx, &last)
//
// A batch whose statement fails ends the transaction's use: the statements
// after it in the batch are skipped (the pipeline's rule), and Close rolls
// back.
type PipelinedTx struct {
	conn      *pgxpool.Conn // nil once Close has given it back
	begun     bool
	committed bool
}

// BeginPipelined takes a connection from pool for a transaction. Nothing is
// sent until the first Send or Commit.
func BeginPipelined(ctx context.Context, pool *pgxpool.Pool) (*PipelinedTx, error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("acquire a connection: %w", err)
	}
	return &PipelinedTx{conn: conn}, nil
}

// Send runs b in the transaction; the first batch sent begins it.
func (t *PipelinedTx) Send(ctx context.Context, b *pgx.Batch) error {
	if t.committed || t.conn == nil {
		return fmt.Errorf("send a batch: the transaction is over")
	}
	if !t.begun {
		b.QueuedQueries = append([]*pgx.QueuedQuery{{SQL: "BEGIN"}}, b.QueuedQueries...)
		t.begun = true
	}
	return t.conn.SendBatch(ctx, b).Close()
}

// Commit runs b (which may be empty) and commits, in one round trip. An
// error means the transaction did not commit, except when the connection
// broke after the COMMIT was sent, where PostgreSQL alone knows, as with
// any commit.
func (t *PipelinedTx) Commit(ctx context.Context, b *pgx.Batch) error {
	b.Queue("COMMIT").Exec(func(tag pgconn.CommandTag) error {
		// COMMIT of a transaction that an error aborted answers ROLLBACK,
		// not an error. A failed statement in this batch skips the COMMIT
		// altogether; this catches an abort from an earlier batch.
		if tag.String() != "COMMIT" {
			return fmt.Errorf("commit: PostgreSQL answered %q: the transaction had failed", tag.String())
		}
		return nil
	})
	if err := t.Send(ctx, b); err != nil {
		return err
	}
	t.committed = true
	return nil
}

// Close rolls the transaction back unless it committed, and gives the
// connection back to its pool (which closes it if it is still in a
// transaction or broken). It is safe to call after Commit, more than once,
// and in a defer.
func (t *PipelinedTx) Close() {
	if t.conn == nil {
		return
	}
	defer func() { t.conn.Release(); t.conn = nil }()
	if t.committed || !t.begun || t.conn.Conn().PgConn().TxStatus() == 'I' {
		return
	}
	// Not the caller's context: it may be what ended the transaction, and
	// the rollback must still be sent for the connection to be reused.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _ = t.conn.Exec(ctx, "ROLLBACK") // on failure Release closes the connection
}
