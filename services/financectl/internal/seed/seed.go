// Package seed writes financectl's demo and bulk data. Every seeded balance is
// a succeeded payment with its settled entry and its audit transition, so a
// wallet's balance always equals the sum of its entries, and every write is
// idempotent: a user whose wallet already exists is skipped, never changed.
package seed

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"

	"github.com/finsvc/finance/pkg/payment"
	"github.com/finsvc/finance/pkg/postgres"
)

// PleoID is the merchant of top-ups and of every seeded starting balance.
const PleoID int64 = 1

// Actor is the actor of the payment_transitions rows written by seeding.
const Actor = "financectl seed"

// DefaultBatchSize is how many users one bulk transaction creates.
const DefaultBatchSize = 10_000

// DefaultWorkers is how many bulk transactions run at once: COPY is bound
// by the PostgreSQL backend's CPU, one core per connection.
const DefaultWorkers = 2

// Merchant is a row of the merchants table.
type Merchant struct {
	ID   int64
	Name string
}

// DemoMerchants returns the merchants of the demo data: Pleo and Apple from
// the challenge's feed example and a few more to pay. The as-is data repeats
// merchant ids across names; here every id has exactly one name.
func DemoMerchants() []Merchant {
	return []Merchant{
		{ID: PleoID, Name: "Pleo"},
		{ID: 4593, Name: "Apple"},
		{ID: 5001, Name: "Amazon"},
		{ID: 5002, Name: "Uber"},
		{ID: 5003, Name: "Spotify"},
		{ID: 5004, Name: "Starbucks"},
		{ID: 5005, Name: "Netflix"},
	}
}

// DemoPayment is one succeeded payment of the challenge's example feed.
type DemoPayment struct {
	ID         int64
	UserID     int64
	MerchantID int64
	Amount     int64
	At         time.Time
}

// ExampleUserID is the user of the challenge's feed example.
const ExampleUserID int64 = 3456

// ExamplePayments returns the two payments of the challenge's feed example,
// oldest first: a 5000 top-up from Pleo and a 3000 payment to Apple, which
// leave user 3456 with a balance of 2000.
func ExamplePayments() []DemoPayment {
	return []DemoPayment{
		{ID: 7844, UserID: ExampleUserID, MerchantID: PleoID, Amount: 5000, At: time.Unix(1656477038, 0).UTC()},
		{ID: 7855, UserID: ExampleUserID, MerchantID: 4593, Amount: -3000, At: time.Unix(1656487348, 0).UTC()},
	}
}

// Demo user range and starting balance.
const (
	DemoFirstUser int64 = 1001
	DemoLastUser  int64 = 1005
	DemoBalance   int64 = 100_000
)

// DemoResult says what Demo wrote.
type DemoResult struct {
	MerchantsCreated int
	// MerchantConflicts lists demo merchants whose id already exists under
	// another name; the existing name is kept.
	MerchantConflicts []Merchant
	UsersCreated      int64
	UsersSkipped      int64
}

// Demo writes the demo data in one transaction: the demo merchants, user 3456
// with the challenge's example feed, and users 1001..1005 with a starting
// balance of 100000 each. Running it again changes nothing.
func Demo(ctx context.Context, pool *pgxpool.Pool) (DemoResult, error) {
	var res DemoResult
	err := postgres.InTx(ctx, pool, func(tx pgx.Tx) error {
		res = DemoResult{}
		var err error
		if res.MerchantsCreated, res.MerchantConflicts, err = ensureMerchants(ctx, tx, DemoMerchants()); err != nil {
			return err
		}
		created, err := insertExampleUser(ctx, tx)
		if err != nil {
			return err
		}
		if created {
			res.UsersCreated++
		} else {
			res.UsersSkipped++
		}
		n, err := insertUserRange(ctx, tx, DemoFirstUser, DemoLastUser, DemoBalance)
		if err != nil {
			return err
		}
		total := DemoLastUser - DemoFirstUser + 1
		res.UsersCreated += n
		res.UsersSkipped += total - n
		return nil
	})
	if err != nil {
		return DemoResult{}, fmt.Errorf("seed demo: %w", err)
	}
	return res, nil
}

// UsersOptions configures Users.
type UsersOptions struct {
	// Count users get ids StartID .. StartID+Count-1.
	Count   int64
	StartID int64
	// Balance is each new user's starting balance in minor units; 0 makes
	// wallets without entries.
	Balance int64
	// PaymentsPerUser is how many settled payments each new user gets (1 if
	// 0): the starting balance, then a history of debits and top-ups.
	PaymentsPerUser int64
	// End is when the seeded histories end (now if zero); every seeded
	// payment is made before it.
	End time.Time
	// BatchSize users are created per transaction (DefaultBatchSize if 0).
	BatchSize int64
	// Workers is how many batches are written at once, each on its own
	// connection (DefaultWorkers if 0).
	Workers int
	// CheckFKs keeps PostgreSQL's row-by-row foreign key checks even when
	// the role is a superuser and could skip them (see copyBatch).
	CheckFKs bool
	// Progress, if set, is called after each committed batch.
	Progress func(Progress)
}

// Progress reports how far Users has come.
type Progress struct {
	Done, Total      int64
	Created, Skipped int64
	// Entries is how many settled entries (and payments) were written.
	Entries int64
}

// UsersResult says what Users wrote.
type UsersResult struct {
	Created, Skipped int64
	// Entries is how many settled entries (and payments) were written.
	Entries int64
}

// ErrInvalidOptions marks options that Users refuses before touching the database.
var ErrInvalidOptions = errors.New("invalid seed options")

// Validate reports every problem with o at once.
func (o UsersOptions) Validate() error {
	var errs []error
	if o.Count < 1 {
		errs = append(errs, fmt.Errorf("%w: user count %d must be at least 1", ErrInvalidOptions, o.Count))
	}
	if o.StartID < 1 {
		errs = append(errs, fmt.Errorf("%w: start id %d must be at least 1", ErrInvalidOptions, o.StartID))
	}
	if o.Count >= 1 && o.StartID >= 1 && o.StartID > maxInt64-(o.Count-1) {
		errs = append(errs, fmt.Errorf("%w: ids %d + %d users overflow int64", ErrInvalidOptions, o.StartID, o.Count))
	}
	if o.Balance < 0 {
		errs = append(errs, fmt.Errorf("%w: balance %d must not be negative", ErrInvalidOptions, o.Balance))
	} else if o.Balance > 0 {
		if err := payment.ValidateAmount(o.Balance); err != nil {
			errs = append(errs, fmt.Errorf("%w: balance: %w", ErrInvalidOptions, err))
		}
	}
	if o.PaymentsPerUser < 0 || o.PaymentsPerUser > maxPaymentsPerUser {
		errs = append(errs, fmt.Errorf("%w: payments per user %d must be from 1 to %d", ErrInvalidOptions, o.PaymentsPerUser, maxPaymentsPerUser))
	}
	if o.Workers < 0 || o.Workers > 64 {
		errs = append(errs, fmt.Errorf("%w: workers %d must be from 1 to 64", ErrInvalidOptions, o.Workers))
	}
	if o.BatchSize < 0 {
		errs = append(errs, fmt.Errorf("%w: batch size %d must not be negative", ErrInvalidOptions, o.BatchSize))
	}
	return errors.Join(errs...)
}

const maxInt64 = int64(^uint64(0) >> 1)

// maxPaymentsPerUser bounds a seeded history: its payments are an hour
// apart, so 100,000 reach back about eleven years.
const maxPaymentsPerUser = 100_000

// Users creates o.Count users in batches, one transaction per batch, skipping
// ids whose wallet already exists (a rerun after an interruption creates
// the rest, and a user is never changed). Each batch is written with COPY:
// the wallets, o.PaymentsPerUser succeeded payments per user (source
// 'seed'), their settled entries and their one transition each. It makes
// sure Pleo and the demo merchants exist first. A cancelled ctx stops it
// between batches; committed batches stay.
func Users(ctx context.Context, pool *pgxpool.Pool, o UsersOptions) (UsersResult, error) {
	if err := o.Validate(); err != nil {
		return UsersResult{}, err
	}
	batch := o.BatchSize
	if batch == 0 {
		batch = DefaultBatchSize
	}
	m := max(o.PaymentsPerUser, 1)
	end := o.End
	if end.IsZero() {
		end = time.Now()
	}
	end = end.UTC().Truncate(time.Microsecond)
	ms := []Merchant{{ID: PleoID, Name: "Pleo"}}
	if m > 1 {
		ms = DemoMerchants()
	}
	if _, _, err := ensureMerchants(ctx, pool, ms); err != nil {
		return UsersResult{}, fmt.Errorf("seed users: %w", err)
	}
	skipFKs := false
	if !o.CheckFKs {
		if err := pool.QueryRow(ctx, `SELECT current_setting('is_superuser') = 'on'`).Scan(&skipFKs); err != nil {
			return UsersResult{}, fmt.Errorf("seed users: %w", err)
		}
	}
	workers := o.Workers
	if workers == 0 {
		workers = DefaultWorkers
	}

	// Batches go to the workers in id order and are counted as they
	// commit. A worker reports its batch before it takes the next one, so
	// with one worker a Progress that cancels ctx stops it right there.
	type span struct{ lo, hi int64 }
	spans := make(chan span)
	var (
		mu    sync.Mutex
		res   UsersResult
		users int64
	)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		defer close(spans)
		last := o.StartID + (o.Count - 1)
		for lo := o.StartID; ; lo += batch {
			hi := last
			if last-lo >= batch {
				hi = lo + batch - 1
			}
			select {
			case spans <- span{lo, hi}:
			case <-gctx.Done():
				return nil // the cause is a worker's error or ctx's
			}
			if hi == last {
				return nil
			}
		}
	})
	for range workers {
		g.Go(func() error {
			for sp := range spans {
				if err := gctx.Err(); err != nil {
					return err
				}
				var created, entries int64
				err := postgres.InTx(gctx, pool, func(tx pgx.Tx) error {
					var err error
					created, entries, err = copyBatch(gctx, tx, sp.lo, sp.hi, m, o.Balance, end, skipFKs)
					return err
				})
				if err != nil {
					return fmt.Errorf("seed users %d..%d: %w", sp.lo, sp.hi, err)
				}
				mu.Lock()
				res.Created += created
				res.Skipped += sp.hi - sp.lo + 1 - created
				res.Entries += entries
				users += sp.hi - sp.lo + 1
				if o.Progress != nil {
					o.Progress(Progress{Done: users, Total: o.Count, Created: res.Created, Skipped: res.Skipped, Entries: res.Entries})
				}
				mu.Unlock()
			}
			return nil
		})
	}
	err := g.Wait()
	if err == nil {
		err = ctx.Err() // cancelled after the last batch was handed out
	}
	mu.Lock()
	defer mu.Unlock()
	return res, err
}

// Analyze runs VACUUM (ANALYZE) on the tables a bulk seed fills: the
// planner then knows their size (a feed is an index range scan, not a scan
// of the table it believes empty), and the visibility map lets the feed
// read its index only. The dev server runs without autovacuum.
func Analyze(ctx context.Context, pool *pgxpool.Pool) error {
	if _, err := pool.Exec(ctx, `VACUUM (ANALYZE) wallets, payments, entries, payment_transitions`); err != nil {
		return fmt.Errorf("vacuum seeded tables: %w", err)
	}
	return nil
}

// querier is what the inserts need: a pool or a transaction.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}
