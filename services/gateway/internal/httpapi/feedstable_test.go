package httpapi_test

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestFeedPagesStableWhileEntriesArrive pages through a feed of 150
// entries, 7 at a time, while another goroutine settles new payments for
// the same user as fast as it can, and one more settles before every page.
// Every older entry is seen exactly once and in order; new entries only
// ever show above them (on the first page), never inside the pages.
func TestFeedPagesStableWhileEntriesArrive(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.wallet(42, 0)
	base := time.Unix(1700000000, 0)
	var older []int64 // newest first
	for i := range int64(150) {
		e.entry(42, 10_000+i, 1, 1+i, base.Add(time.Duration(i)*time.Second))
		older = append([]int64{10_000 + i}, older...)
	}

	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var next = make(chan int64, 1)
	next <- 20_000
	settle := func(ctx context.Context) error {
		id := <-next
		defer func() { next <- id + 1 }()
		_, err := e.pool.Exec(ctx, `
			WITH p AS (
				INSERT INTO payments (id, user_id, merchant_id, amount, status, idempotency_key, request_hash, source)
				VALUES ($1::bigint, 42, 2, -1, 'succeeded', 'new-' || $1::bigint, '', 'seed') RETURNING id)
			INSERT INTO entries (user_id, payment_id, merchant_id, amount, occurred_at)
			SELECT 42, id, 2, -1, now() FROM p`, id)
		return err
	}
	wg.Go(func() {
		for ctx.Err() == nil {
			if err := settle(ctx); err != nil && ctx.Err() == nil {
				t.Errorf("settle: %v", err)
				return
			}
		}
	})

	type page struct {
		Transactions []struct {
			ID int64 `json:"id"`
		} `json:"transactions"`
		NextCursor string `json:"next_cursor"`
	}
	tok := token(t, 42, false)
	var seen []int64
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 100 {
			t.Fatal("pagination does not end")
		}
		if err := settle(context.Background()); err != nil {
			t.Fatalf("settle: %v", err)
		}
		path := "/v1/users/42/feed?limit=7"
		if cursor != "" {
			path += "&cursor=" + url.QueryEscape(cursor)
		}
		w := e.do(req{method: http.MethodGet, path: path, token: tok})
		if w.Code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, w.Code, w.Body.String())
		}
		p := decodeBody[page](t, w)
		for _, tr := range p.Transactions {
			seen = append(seen, tr.ID)
		}
		if p.NextCursor == "" {
			break
		}
		cursor = p.NextCursor
	}
	stop()
	wg.Wait()

	var gotOlder []int64
	newAfterOlder := false
	for _, id := range seen {
		if slices.Contains(older, id) {
			gotOlder = append(gotOlder, id)
		} else if len(gotOlder) > 0 {
			newAfterOlder = true
		}
	}
	if diff := cmp.Diff(older, gotOlder); diff != "" {
		t.Errorf("older entries over all pages (-want +got):\n%s", diff)
	}
	if newAfterOlder {
		t.Errorf("a new entry showed below an older one: %v", seen)
	}
	if n := e.count(`SELECT count(*) FROM entries WHERE payment_id >= 20000`); n < int64(len(older)/7) {
		t.Errorf("only %d entries arrived while paging; the test did not interleave", n)
	}
}
