package store_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"github.com/finsvc/finance/pkg/pgtest"
	"github.com/finsvc/finance/services/legacy/internal/dbtest"
	"github.com/finsvc/finance/services/legacy/internal/store"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func TestMigrateTwiceKeepsTheTwoTables(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.NewPool(t)
	if err := store.Migrate(ctx, pool); err != nil {
		t.Fatalf("second migrate: %v", err)
	}
	rows, err := pool.Query(ctx, `SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, n)
	}
	if diff := cmp.Diff([]string{"payments", "providers"}, tables); diff != "" {
		t.Errorf("tables (-want +got):\n%s", diff)
	}
}

func TestCreateDatabase(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	name := fmt.Sprintf("legacytest_created_%d", time.Now().UnixNano())
	url := pgtest.WithDatabase(pgtest.ServerURL(), name)
	t.Cleanup(func() {
		conn, err := pgx.Connect(context.Background(), pgtest.ServerURL())
		if err != nil {
			t.Logf("drop %s: %v", name, err)
			return
		}
		defer conn.Close(context.Background())
		_, _ = conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	})
	for i, want := range []bool{true, false} {
		created, err := store.CreateDatabase(ctx, url)
		if err != nil || created != want {
			t.Fatalf("call %d: created=%v err=%v, want %v <nil>", i+1, created, err, want)
		}
	}
}

func TestSeedAndFeed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.NewPool(t)
	st := store.New(pool)

	res, err := store.Seed(ctx, st, store.SeedOptions{Demo: true, Users: 3, StartID: 10, Balance: 700})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(store.SeedResult{ProvidersCreated: 7, UsersCreated: 4}, res); diff != "" {
		t.Errorf("first seed (-want +got):\n%s", diff)
	}
	res, err = store.Seed(ctx, st, store.SeedOptions{Demo: true, Users: 4, StartID: 10, Balance: 700})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(store.SeedResult{UsersCreated: 1, UsersSkipped: 4}, res); diff != "" {
		t.Errorf("second seed (-want +got):\n%s", diff)
	}

	// The challenge's example feed.
	f, err := st.Feed(ctx, store.ExampleUserID)
	if err != nil {
		t.Fatal(err)
	}
	want := store.Feed{UserID: 3456, Balance: 2000, Transactions: []store.FeedItem{
		{ID: 7855, Name: "Apple", Amount: -3000, Timestamp: time.Unix(1656487348, 0)},
		{ID: 7844, Name: "Pleo", Amount: 5000, Timestamp: time.Unix(1656477038, 0)},
	}}
	if diff := cmp.Diff(want, f, cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })); diff != "" {
		t.Errorf("example feed (-want +got):\n%s", diff)
	}

	// A payment counts into the balance and comes first; a provider id that
	// repeats across names (as in the as-is data) still gives one row.
	if _, err := pool.Exec(ctx, `INSERT INTO providers (id, name) VALUES (4593, 'Apple Inc')`); err != nil {
		t.Fatal(err)
	}
	p, err := st.InsertPayment(ctx, 11, 4593, -250)
	if err != nil {
		t.Fatal(err)
	}
	f, err = st.Feed(ctx, 11)
	if err != nil {
		t.Fatal(err)
	}
	if f.Balance != 450 || len(f.Transactions) != 2 || f.Transactions[0].ID != p.ID || f.Transactions[0].Name != "Apple" {
		t.Errorf("feed of user 11 after a payment = %+v", f)
	}

	// A user with no payments has an empty feed.
	f, err = st.Feed(ctx, 99)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(store.Feed{UserID: 99, Transactions: []store.FeedItem{}}, f); diff != "" {
		t.Errorf("empty feed (-want +got):\n%s", diff)
	}
}

func TestSeedOptionsValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		o    store.SeedOptions
		ok   bool
	}{
		{"demo", store.SeedOptions{Demo: true}, true},
		{"users", store.SeedOptions{Users: 5, StartID: 1, Balance: 1}, true},
		{"nothing", store.SeedOptions{}, false},
		{"no balance", store.SeedOptions{Users: 5, StartID: 1}, false},
		{"bad start", store.SeedOptions{Users: 5, StartID: 0, Balance: 1}, false},
		{"negative users", store.SeedOptions{Users: -1, Demo: true}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if err := tc.o.Validate(); (err == nil) != tc.ok {
				t.Errorf("Validate() = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}
