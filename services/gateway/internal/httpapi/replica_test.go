package httpapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/finsvc/finance/pkg/pgtest"
	"github.com/finsvc/finance/pkg/postgres"
	"github.com/finsvc/finance/pkg/schema"
	"github.com/finsvc/finance/pkg/testkit"
)

// TestReplicaFallback runs the gateway against a private primary and a
// hot standby fed by streaming replication, both started by the test. Feed
// pages are read on the replica; while the replica's replay is paused, a
// client's own payment (accepted, then succeeded) is still in its next
// feed and balance, read again from the primary because the replica's
// event_seq of the wallet is behind; once replay resumes, the replica
// serves again.
func TestReplicaFallback(t *testing.T) {
	t.Parallel()
	rs := pgtest.StartReplicated(t)
	ctx := context.Background()
	primary := connect(t, rs.PrimaryURL)
	if _, err := schema.Up(ctx, primary); err != nil {
		t.Fatalf("migrate the primary: %v", err)
	}
	replica := connect(t, rs.ReplicaURL)

	g := newReadGateway(t, primary, replica)
	g.exec(`INSERT INTO merchants (id, name) VALUES (1, 'Pleo'), (2, 'Apple')`)
	g.wallet(42, 10_000)
	for i := range int64(3) {
		g.entry(42, 1000+i, 1, 10_000/3, time.Unix(1700000000+i, 0))
	}
	tok := token(t, 42, false)
	seqOn := func(pool *pgxpool.Pool) int64 {
		var seq int64
		if err := pool.QueryRow(ctx, `SELECT coalesce((SELECT event_seq FROM wallets WHERE user_id = 42), -1)`).Scan(&seq); err != nil {
			t.Fatalf("read event_seq: %v", err)
		}
		return seq
	}
	caughtUp := func() bool { return seqOn(replica) == seqOn(primary) }
	testkit.Eventually(t, "the replica has the wallet", caughtUp)
	// The fixture's entries do not move the wallet's event_seq: wait for
	// them too, or the first page may be read before they are replayed.
	testkit.Eventually(t, "the replica has the entries", func() bool {
		var n int
		_ = replica.QueryRow(ctx, `SELECT count(*) FROM entries WHERE user_id = 42`).Scan(&n)
		return n == 3
	})

	// Reads go to the replica: a first page (then cached) and a cursor page.
	first := decodeBody[feedPage](t, g.conditional("/v1/users/42/feed?limit=2", tok, ""))
	if len(first.Transactions) != 2 || first.NextCursor == "" {
		t.Fatalf("first page %+v", first)
	}
	wantFull(t, "second page", g.conditional("/v1/users/42/feed?limit=2&cursor="+first.NextCursor, tok, ""))
	if n := g.reads("feed", "replica"); n != 2 {
		t.Fatalf("%v pages read on the replica, want 2", n)
	}

	// Pause the replica's replay; the client pays and its payment succeeds.
	if _, err := replica.Exec(ctx, `SELECT pg_wal_replay_pause()`); err != nil {
		t.Fatalf("pause replay: %v", err)
	}
	testkit.Eventually(t, "replay paused", func() bool {
		var state string
		_ = replica.QueryRow(ctx, `SELECT pg_get_wal_replay_pause_state()`).Scan(&state)
		return state == "paused"
	})
	w := g.pay(tok, "replica-1", 42, 2, -2500)
	if w.Code != http.StatusAccepted {
		t.Fatalf("pay: %d %s", w.Code, w.Body.String())
	}
	p := decodeBody[paymentResp](t, w)
	settle(t, primary, p.ID)
	if behind, now := seqOn(replica), seqOn(primary); behind >= now {
		t.Fatalf("replica event_seq %d, primary %d: the replica should be behind", behind, now)
	}

	feed := decodeBody[feedResp](t, g.conditional("/v1/users/42/feed?limit=2", tok, ""))
	if !feed.has(p.ID) || feed.Balance != 7500 {
		t.Errorf("feed while the replica is behind: %+v; want payment %d and balance 7500", feed, p.ID)
	}
	if bal := decodeBody[balanceResp](t, g.conditional("/v1/users/42/balance", tok, "")); bal.Balance != 7500 || bal.Held != 0 {
		t.Errorf("balance while the replica is behind: %+v, want 7500 settled", bal)
	}
	wantFull(t, "cursor page while behind", g.conditional("/v1/users/42/feed?limit=2&cursor="+first.NextCursor, tok, ""))
	if n := g.reads("feed", "replica_behind"); n != 2 {
		t.Errorf("%v pages read again from the primary, want 2", n)
	}
	if n := g.reads("feed", "replica"); n != 2 {
		t.Errorf("%v pages read on the replica while it was behind, want still 2", n)
	}

	// Replay resumes: once the replica has the wallet's event_seq, pages
	// come from it again.
	if _, err := replica.Exec(ctx, `SELECT pg_wal_replay_resume()`); err != nil {
		t.Fatalf("resume replay: %v", err)
	}
	testkit.Eventually(t, "the replica caught up", caughtUp)
	again := decodeBody[feedResp](t, g.conditional("/v1/users/42/feed?limit=3", tok, ""))
	if !again.has(p.ID) || again.Balance != 7500 {
		t.Errorf("feed from the caught-up replica: %+v", again)
	}
	if n := g.reads("feed", "replica"); n != 3 {
		t.Errorf("%v pages read on the replica after it caught up, want 3", n)
	}
}

type feedPage struct {
	Transactions []json.RawMessage `json:"transactions"`
	NextCursor   string            `json:"next_cursor"`
}

func connect(t *testing.T, url string) *pgxpool.Pool {
	t.Helper()
	pool, err := postgres.Connect(context.Background(), url, 3)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(pool.Close)
	return pool
}
