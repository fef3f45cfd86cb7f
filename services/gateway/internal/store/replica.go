package store

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Reads that a replica may serve (docs/reads.md).
//
// Every feed or balance read starts with Wallet, one primary-key read of
// the wallet on the PRIMARY: its event_seq is bumped in the same
// transaction by every change of the user's balance, holds or payments, so
// it names the newest state a client can have been told about (a 202, a
// succeeded status, an event). A page read on the replica returns the
// replica's event_seq of the same wallet in the same snapshot; when it is
// lower, the replica has not replayed that change yet, and the page is read
// again from the primary. No LSN is tracked, nothing is remembered between
// requests, and it holds across gateway instances, because the comparison is
// made against the primary at read time.

// Wallet is a user's wallet row as the primary has it now.
type Wallet struct {
	UserID   int64
	Balance  int64
	Held     int64
	EventSeq int64
}

// Source says which server answered a page.
type Source string

// Sources of a page.
const (
	// SourcePrimary: no replica is configured, or the page was not asked of one.
	SourcePrimary Source = "primary"
	// SourceReplica: the replica had replayed the wallet's event_seq.
	SourceReplica Source = "replica"
	// SourceLagging: the replica's event_seq was behind; read from the primary.
	SourceLagging Source = "replica_behind"
	// SourceReplicaFailed: the replica failed; read from the primary.
	SourceReplicaFailed Source = "replica_failed"
)

// SetReplica makes read, a pool on a streaming replica of the primary,
// serve feed pages (FeedPageAtLeast). Call it before serving.
func (s *Store) SetReplica(read *pgxpool.Pool) { s.read = read }

// HasReplica reports whether a replica serves feed pages.
func (s *Store) HasReplica() bool { return s.read != nil }

// Wallet returns userID's wallet from the primary, or ErrWalletNotFound.
// Concurrent calls share statements (shared.go).
func (s *Store) Wallet(ctx context.Context, userID int64) (Wallet, error) {
	return s.wallets.Do(ctx, userID)
}

// readWallets is the wallet reads' shared statement: one primary-key read
// for one user, a read of all of them by = ANY for more.
func readWallets(pool *pgxpool.Pool) func(ctx context.Context, ids []int64) ([]Wallet, []error) {
	return func(ctx context.Context, ids []int64) ([]Wallet, []error) {
		out, errs := make([]Wallet, len(ids)), make([]error, len(ids))
		q, arg := `SELECT user_id, balance, held, event_seq FROM wallets WHERE user_id = ANY($1)`, any(ids)
		if len(ids) == 1 {
			q, arg = `SELECT user_id, balance, held, event_seq FROM wallets WHERE user_id = $1`, ids[0]
		}
		found := make(map[int64]Wallet, len(ids))
		rows, _ := pool.Query(ctx, q, arg)
		var w Wallet
		_, err := pgx.ForEachRow(rows, []any{&w.UserID, &w.Balance, &w.Held, &w.EventSeq}, func() error {
			found[w.UserID] = w
			return nil
		})
		for i, id := range ids {
			switch w, ok := found[id]; {
			case err != nil:
				errs[i] = fmt.Errorf("read wallet of user %d: %w", id, err)
			case !ok:
				errs[i] = fmt.Errorf("user %d: %w", id, ErrWalletNotFound)
			default:
				out[i] = w
			}
		}
		return out, errs
	}
}

// FeedPageAtLeast is FeedPage read from the replica when one is set, as
// long as the replica's wallet has replayed event_seq minSeq (read from the
// primary by Wallet just before); otherwise, or when the replica fails or
// does not know the user yet, from the primary. It says which answered.
func (s *Store) FeedPageAtLeast(ctx context.Context, userID, beforeID int64, limit int, minSeq int64) (Feed, Source, error) {
	if beforeID <= 0 {
		beforeID = math.MaxInt64
	}
	if s.read == nil {
		f, err := feedPage(ctx, s.pool, userID, beforeID, limit)
		return f, SourcePrimary, err
	}
	f, err := feedPage(ctx, s.read, userID, beforeID, limit)
	switch {
	case err == nil && f.EventSeq >= minSeq:
		return f, SourceReplica, nil
	case ctx.Err() != nil:
		return Feed{}, SourceReplica, err
	}
	src := SourceLagging
	if err != nil && !errors.Is(err, ErrWalletNotFound) { // an unknown user may just be a new one not replayed yet
		src = SourceReplicaFailed
	}
	f, err = feedPage(ctx, s.pool, userID, beforeID, limit)
	return f, src, err
}
