package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/finsvc/finance/pkg/coalesce"
)

// TestWalletReadsShareOneStatement holds the only statement slot while 50
// reads of known, unknown and repeated users arrive, then frees it: one
// statement answers all 50, each with its own user's row.
func TestWalletReadsShareOneStatement(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	b := coalesce.New(1, sharedBatchMax, sharedReadTimeout, readWallets(s.pool))
	s.wallets = b
	release := b.Hold() // a statement is running: every read below waits

	users := []int64{10, 11, 12, 99, 10}
	want := map[int64]int64{10: 1000, 11: 50, 12: 0}
	const reads = 50
	errs := make(chan error, reads)
	var wg sync.WaitGroup
	for i := range reads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			user := users[i%len(users)]
			w, err := s.Wallet(context.Background(), user)
			balance, known := want[user]
			switch {
			case !known && !errors.Is(err, ErrWalletNotFound):
				errs <- fmt.Errorf("user %d: want ErrWalletNotFound, got %+v, %v", user, w, err)
			case known && (err != nil || w.UserID != user || w.Balance != balance):
				errs <- fmt.Errorf("user %d: want balance %d, got %+v, %v", user, balance, w, err)
			}
		}()
	}
	waitFor(t, func() bool { return b.Waiting() == reads })
	release()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if statements, got := b.Stats(); statements != 1 || got != reads {
		t.Errorf("want 1 statement for %d reads, got %d for %d", reads, statements, got)
	}
}

// TestWalletReadSeesEveryEarlierCommit: a read that starts after a change
// committed returns it, alone or while other reads keep statements busy.
func TestWalletReadSeesEveryEarlierCommit(t *testing.T) {
	t.Parallel()
	s, pool := setup(t)
	ctx := context.Background()
	stop := make(chan struct{})
	var busy sync.WaitGroup
	for range 4 { // other users' reads, so that reads of user 10 share statements
		busy.Add(1)
		go func() {
			defer busy.Done()
			for {
				select {
				case <-stop:
					return
				default:
					if _, err := s.Wallet(ctx, 11); err != nil {
						t.Error(err)
						return
					}
				}
			}
		}()
	}
	for i := int64(1); i <= 200; i++ {
		if _, err := pool.Exec(ctx, `UPDATE wallets SET event_seq = $1 WHERE user_id = 10`, i); err != nil {
			t.Fatal(err)
		}
		w, err := s.Wallet(ctx, 10)
		if err != nil || w.EventSeq != i {
			t.Fatalf("after committing event_seq %d, read %+v, %v", i, w, err)
		}
	}
	close(stop)
	busy.Wait()
	if statements, reads := s.wallets.Stats(); statements > reads {
		t.Errorf("%d statements for %d reads", statements, reads)
	}
}

// TestWalletReadGivesUpWithItsContext: a waiting read whose client went
// away returns at once; the statement it waited for still answers the others.
func TestWalletReadGivesUpWithItsContext(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	b := s.wallets
	release := b.Hold()

	ctx, cancel := context.WithCancel(context.Background())
	gone := make(chan error, 1)
	go func() { _, err := s.Wallet(ctx, 10); gone <- err }()
	stays := make(chan error, 1)
	go func() {
		w, err := s.Wallet(context.Background(), 11)
		if err == nil && w.Balance != 50 {
			err = fmt.Errorf("user 11: balance %d, want 50", w.Balance)
		}
		stays <- err
	}()
	waitFor(t, func() bool { return b.Waiting() == 2 })
	cancel()
	if err := <-gone; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled read: want context.Canceled, got %v", err)
	}
	release()
	if err := <-stays; err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10 s")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestFeedPagesShareOneStatement holds the only statement slot while first
// pages, cursor pages, an empty wallet's page and an unknown user's page
// of several users arrive, then frees it: one FeedPagesSQL statement
// answers them all, each exactly as its own FeedSQL statement does.
func TestFeedPagesShareOneStatement(t *testing.T) {
	t.Parallel()
	s, pool := setup(t)
	ctx := context.Background()
	for _, sql := range []string{
		`INSERT INTO payments (id, user_id, merchant_id, amount, status, idempotency_key, request_hash, source)
		 SELECT g, 10 + g % 2, 1 + g % 2, -1 - g, 'succeeded', 'k' || g, '', 'seed' FROM generate_series(1, 30) g`,
		`INSERT INTO entries (user_id, payment_id, merchant_id, amount, occurred_at)
		 SELECT user_id, id, merchant_id, amount, created_at FROM payments ORDER BY id`,
	} {
		if _, err := pool.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	var cursor int64
	if err := pool.QueryRow(ctx, `SELECT id FROM entries WHERE user_id = 10 ORDER BY id DESC OFFSET 4 LIMIT 1`).Scan(&cursor); err != nil {
		t.Fatal(err)
	}
	reqs := []feedRequest{
		{10, 0, 5}, {11, 0, 50}, {10, cursor, 5}, {12, 0, 5}, {99, 0, 5}, {10, 0, 5}, {11, cursor, 3},
	}
	type answer struct {
		feed Feed
		err  string
	}
	answerOf := func(f Feed, err error) answer {
		if err != nil {
			return answer{err: err.Error()}
		}
		return answer{feed: f}
	}
	want := make([]answer, len(reqs))
	for i, r := range reqs {
		before := r.before
		if before == 0 {
			before = math.MaxInt64
		}
		want[i] = answerOf(feedPage(ctx, pool, r.userID, before, r.limit))
	}

	b := coalesce.New(1, sharedBatchMax, sharedReadTimeout, readFeedPages(pool))
	s.feeds = b
	release := b.Hold()
	got := make([]answer, len(reqs))
	var wg sync.WaitGroup
	for i, r := range reqs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i] = answerOf(s.FeedPage(ctx, r.userID, r.before, r.limit))
		}()
	}
	waitFor(t, func() bool { return b.Waiting() == len(reqs) })
	release()
	wg.Wait()
	for i := range reqs {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Errorf("page %+v: shared statement gave\n%+v\nits own statement gave\n%+v", reqs[i], got[i], want[i])
		}
	}
	if want[0].err != "" || len(want[0].feed.Entries) != 5 || !want[0].feed.More || want[4].err == "" || len(want[3].feed.Entries) != 0 {
		t.Errorf("the pages compared are not the cases meant: %+v", want)
	}
	if statements, reads := b.Stats(); statements != 1 || reads != int64(len(reqs)) {
		t.Errorf("want 1 statement for %d pages, got %d for %d", len(reqs), statements, reads)
	}
}
