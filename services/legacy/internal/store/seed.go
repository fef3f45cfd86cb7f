package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/finsvc/finance/pkg/postgres"
)

// PleoID is the provider of top-ups and of every seeded starting balance. The
// ids and names match financectl's demo merchants, so one load test pays the
// same merchants on both systems.
const PleoID int64 = 1

// Provider is a row of the providers table.
type Provider struct {
	ID   int64
	Name string
}

// DemoProviders returns the providers of the demo data. The list repeats
// financectl's demo merchants on purpose: the as-is service is the load
// tests' baseline and shares no code with the pipeline beyond pkg helpers,
// so that nothing the pipeline changes can change the baseline.
func DemoProviders() []Provider {
	return []Provider{
		{ID: PleoID, Name: "Pleo"},
		{ID: 4593, Name: "Apple"},
		{ID: 5001, Name: "Amazon"},
		{ID: 5002, Name: "Uber"},
		{ID: 5003, Name: "Spotify"},
		{ID: 5004, Name: "Starbucks"},
		{ID: 5005, Name: "Netflix"},
	}
}

// ExampleUserID is the user of the challenge's feed example.
const ExampleUserID int64 = 3456

// SeedOptions says what Seed writes.
type SeedOptions struct {
	// Demo adds the challenge's example feed for user 3456 (a 5000 top-up
	// and a 3000 payment to Apple, balance 2000).
	Demo bool
	// Users top-up users StartID..StartID+Users-1 with Balance each.
	Users   int64
	StartID int64
	Balance int64
}

// Validate reports every problem with o at once.
func (o SeedOptions) Validate() error {
	var errs []error
	if o.Users < 0 {
		errs = append(errs, fmt.Errorf("users %d: want 0 or more", o.Users))
	}
	if o.Users > 0 && o.StartID < 1 {
		errs = append(errs, fmt.Errorf("start id %d: want at least 1", o.StartID))
	}
	if o.Users > 0 && o.Balance <= 0 {
		errs = append(errs, fmt.Errorf("balance %d: want more than 0", o.Balance))
	}
	if !o.Demo && o.Users == 0 {
		errs = append(errs, errors.New("nothing to seed: want demo data or users"))
	}
	return errors.Join(errs...)
}

// SeedResult says what Seed wrote.
type SeedResult struct {
	ProvidersCreated int64
	UsersCreated     int64
	UsersSkipped     int64
}

// Seed writes the demo providers, and the demo feed and bulk users o asks
// for, in one transaction. A user who already has payments is skipped, never
// changed, so running it again changes nothing.
func Seed(ctx context.Context, s *Store, o SeedOptions) (SeedResult, error) {
	if err := o.Validate(); err != nil {
		return SeedResult{}, err
	}
	var res SeedResult
	err := postgres.InTx(ctx, s.pool, func(tx pgx.Tx) error {
		res = SeedResult{}
		// Serialise seeders: "skip users who have payments" is check-then-insert.
		if _, err := tx.Exec(ctx, `LOCK TABLE payments IN SHARE ROW EXCLUSIVE MODE`); err != nil {
			return fmt.Errorf("lock payments: %w", err)
		}
		for _, p := range DemoProviders() {
			tag, err := tx.Exec(ctx, `INSERT INTO providers (id, name) SELECT $1, $2
				WHERE NOT EXISTS (SELECT 1 FROM providers WHERE id = $1)`, p.ID, p.Name)
			if err != nil {
				return fmt.Errorf("insert provider %d: %w", p.ID, err)
			}
			res.ProvidersCreated += tag.RowsAffected()
		}
		if o.Demo {
			tag, err := tx.Exec(ctx, `INSERT INTO payments (id, amount, user_id, merchant_id, "timestamp")
				SELECT v.id, v.amount, $1, v.merchant_id, v.ts
				FROM (VALUES (7844::bigint, 5000::bigint, $2::bigint, $3::timestamptz),
				             (7855, -3000, 4593, $4)) AS v (id, amount, merchant_id, ts)
				WHERE NOT EXISTS (SELECT 1 FROM payments WHERE user_id = $1)`,
				ExampleUserID, PleoID, time.Unix(1656477038, 0).UTC(), time.Unix(1656487348, 0).UTC())
			if err != nil {
				return fmt.Errorf("insert the example feed: %w", err)
			}
			if tag.RowsAffected() > 0 {
				res.UsersCreated++
			} else {
				res.UsersSkipped++
			}
		}
		if o.Users > 0 {
			tag, err := tx.Exec(ctx, `INSERT INTO payments (amount, user_id, merchant_id)
				SELECT $3, u, $4 FROM generate_series($1::bigint, $2::bigint) AS u
				WHERE NOT EXISTS (SELECT 1 FROM payments WHERE user_id = u)`,
				o.StartID, o.StartID+o.Users-1, o.Balance, PleoID)
			if err != nil {
				return fmt.Errorf("insert starting balances: %w", err)
			}
			res.UsersCreated += tag.RowsAffected()
			res.UsersSkipped += o.Users - tag.RowsAffected()
		}
		return nil
	})
	return res, err
}
