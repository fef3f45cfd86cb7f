package seed_test

import (
	"context"
	"errors"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/finsvc/finance/pkg/payment"
	"github.com/finsvc/finance/pkg/pgtest"
	"github.com/finsvc/finance/services/financectl/internal/seed"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func TestUsersOptionsValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		o    seed.UsersOptions
		ok   bool
	}{
		{"defaults", seed.UsersOptions{Count: 10, StartID: 1_000_000, Balance: 100_000}, true},
		{"zero balance", seed.UsersOptions{Count: 1, StartID: 1}, true},
		{"no users", seed.UsersOptions{Count: 0, StartID: 1}, false},
		{"id zero", seed.UsersOptions{Count: 1, StartID: 0}, false},
		{"negative balance", seed.UsersOptions{Count: 1, StartID: 1, Balance: -1}, false},
		{"balance above limit", seed.UsersOptions{Count: 1, StartID: 1, Balance: payment.MaxAbsAmount + 1}, false},
		{"ids overflow", seed.UsersOptions{Count: 2, StartID: 1<<63 - 1}, false},
		{"last id is max", seed.UsersOptions{Count: 1, StartID: 1<<63 - 1}, true},
		{"negative batch", seed.UsersOptions{Count: 1, StartID: 1, BatchSize: -1}, false},
		{"history", seed.UsersOptions{Count: 1, StartID: 1, Balance: 1, PaymentsPerUser: 20}, true},
		{"negative payments per user", seed.UsersOptions{Count: 1, StartID: 1, PaymentsPerUser: -1}, false},
		{"too many payments per user", seed.UsersOptions{Count: 1, StartID: 1, PaymentsPerUser: 100_001}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.o.Validate()
			if (err == nil) != tt.ok {
				t.Fatalf("Validate() = %v, want ok %v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, seed.ErrInvalidOptions) {
				t.Errorf("Validate() = %v, want ErrInvalidOptions", err)
			}
		})
	}
}

// TestUsersBatches checks batch boundaries, progress, skipping of existing
// users and that the request hash computed in SQL is payment.RequestHash.
func TestUsersBatches(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		pre       *seed.UsersOptions // run first
		o         seed.UsersOptions
		want      seed.UsersResult
		wantSteps []int64 // Progress.Done of each batch
	}{
		{
			name:      "exact batches",
			o:         seed.UsersOptions{Count: 6, StartID: 10, Balance: 500, BatchSize: 3},
			want:      seed.UsersResult{Created: 6, Entries: 6},
			wantSteps: []int64{3, 6},
		},
		{
			name:      "short last batch",
			o:         seed.UsersOptions{Count: 7, StartID: 10, Balance: 500, BatchSize: 3},
			want:      seed.UsersResult{Created: 7, Entries: 7},
			wantSteps: []int64{3, 6, 7},
		},
		{
			name:      "overlap skips existing",
			pre:       &seed.UsersOptions{Count: 5, StartID: 12, Balance: 500},
			o:         seed.UsersOptions{Count: 10, StartID: 10, Balance: 500, BatchSize: 4},
			want:      seed.UsersResult{Created: 5, Skipped: 5, Entries: 5},
			wantSteps: []int64{4, 8, 10},
		},
		{
			name:      "one user at the top of the id range",
			o:         seed.UsersOptions{Count: 1, StartID: 1<<63 - 1, Balance: 1},
			want:      seed.UsersResult{Created: 1, Entries: 1},
			wantSteps: []int64{1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			pool := pgtest.NewPool(t)
			if tt.pre != nil {
				if _, err := seed.Users(ctx, pool, *tt.pre); err != nil {
					t.Fatalf("pre Users: %v", err)
				}
			}
			var steps []int64
			o := tt.o
			o.Workers = 1 // batches commit in order
			o.Progress = func(p seed.Progress) {
				steps = append(steps, p.Done)
				if p.Total != o.Count {
					t.Errorf("Progress.Total = %d, want %d", p.Total, o.Count)
				}
			}
			got, err := seed.Users(ctx, pool, o)
			if err != nil {
				t.Fatalf("Users: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Users result (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantSteps, steps); diff != "" {
				t.Errorf("progress steps (-want +got):\n%s", diff)
			}
			checkHashes(t, pool)
		})
	}
}

func checkHashes(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	type row struct {
		UserID, MerchantID, Amount int64
		RequestHash                string
	}
	rows, err := pool.Query(context.Background(), `SELECT user_id, merchant_id, amount, request_hash FROM payments`)
	if err != nil {
		t.Fatal(err)
	}
	ps, err := pgx.CollectRows(rows, pgx.RowToStructByPos[row])
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) == 0 {
		t.Fatal("no payments")
	}
	for _, p := range ps {
		if want := payment.RequestHash(p.UserID, p.MerchantID, p.Amount); p.RequestHash != want {
			t.Errorf("user %d: request_hash %s, want %s", p.UserID, p.RequestHash, want)
		}
	}
}

func TestUsersStopsWhenCancelled(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t)
	ctx, cancel := context.WithCancel(context.Background())
	o := seed.UsersOptions{Count: 10, StartID: 1, Balance: 1, BatchSize: 2, Workers: 1,
		Progress: func(p seed.Progress) {
			if p.Done == 4 {
				cancel()
			}
		}}
	got, err := seed.Users(ctx, pool, o)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Users err = %v, want context.Canceled", err)
	}
	if diff := cmp.Diff(seed.UsersResult{Created: 4, Entries: 4}, got); diff != "" {
		t.Errorf("result (-want +got):\n%s", diff)
	}
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM wallets`).Scan(&n); err != nil || n != 4 {
		t.Errorf("wallets after cancel = %d, %v; want the 4 committed", n, err)
	}
}

func TestDemoKeepsExistingMerchantName(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.NewPool(t)
	if _, err := pool.Exec(ctx, `INSERT INTO merchants (id, name) VALUES (4593, 'Apple Inc.')`); err != nil {
		t.Fatal(err)
	}
	res, err := seed.Demo(ctx, pool)
	if err != nil {
		t.Fatalf("Demo: %v", err)
	}
	if diff := cmp.Diff([]seed.Merchant{{ID: 4593, Name: "Apple Inc."}}, res.MerchantConflicts); diff != "" {
		t.Errorf("conflicts (-want +got):\n%s", diff)
	}
	if want := len(seed.DemoMerchants()) - 1; res.MerchantsCreated != want {
		t.Errorf("MerchantsCreated = %d, want %d", res.MerchantsCreated, want)
	}
	checkHashes(t, pool)
}
