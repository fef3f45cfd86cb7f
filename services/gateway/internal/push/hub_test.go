package push_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/finsvc/finance/pkg/ledger"
	"github.com/finsvc/finance/services/gateway/internal/push"
)

func ev(user, seq int64) ledger.Event {
	return ledger.Event{PaymentID: 100000 + seq, UserID: user, UserSeq: seq, Status: "accepted"}
}

func seqs(evs []ledger.Event) []int64 {
	out := []int64{}
	for _, e := range evs {
		out = append(out, e.UserSeq)
	}
	return out
}

func TestRecentIsSortedUniqueAndBounded(t *testing.T) {
	t.Parallel()
	h := push.New(push.Config{RecentEvents: push.RecentPerUser + 2})
	for _, s := range []int64{3, 1, 2, 2, 5, 4} { // out of order, one repeat
		h.Publish(ev(7, s))
	}
	s, recent, ok := h.Subscribe(7)
	if !ok {
		t.Fatal("subscribe refused")
	}
	s.Close()
	if diff := cmp.Diff([]int64{1, 2, 3, 4, 5}, seqs(recent)); diff != "" {
		t.Errorf("recent (-want +got):\n%s", diff)
	}

	// Per user: only the latest RecentPerUser by user_seq.
	for i := int64(6); i <= push.RecentPerUser+10; i++ {
		h.Publish(ev(7, i))
	}
	h.Publish(ev(7, 1)) // older than everything kept: not kept again
	_, recent, _ = h.Subscribe(7)
	if len(recent) != push.RecentPerUser || recent[0].UserSeq != 11 || recent[len(recent)-1].UserSeq != push.RecentPerUser+10 {
		t.Errorf("recent = %v, want the latest %d (11..%d)", seqs(recent), push.RecentPerUser, push.RecentPerUser+10)
	}

	// Over all users: the least recently active user is forgotten first.
	h.Publish(ev(8, 1))
	h.Publish(ev(8, 2))
	h.Publish(ev(8, 3))
	if _, recent, _ = h.Subscribe(7); len(recent) != 0 {
		t.Errorf("user 7 kept %v after RecentEvents was exceeded by user 8", seqs(recent))
	}
	if _, recent, _ = h.Subscribe(8); len(recent) != 3 {
		t.Errorf("user 8 kept %v, want 1..3", seqs(recent))
	}
}

func TestSlowStreamIsDropped(t *testing.T) {
	t.Parallel()
	h := push.New(push.Config{Buffer: 2})
	slow, _, _ := h.Subscribe(7)
	defer slow.Close()
	other, _, _ := h.Subscribe(8)
	defer other.Close()
	for s := int64(1); s <= 3; s++ {
		h.Publish(ev(7, s))
	}
	select {
	case <-slow.Dropped():
	default:
		t.Fatal("a stream with a full buffer was not dropped")
	}
	if got := <-slow.Events(); got.UserSeq != 1 {
		t.Errorf("first buffered event %d, want 1", got.UserSeq)
	}
	select {
	case <-other.Dropped():
		t.Error("another user's stream was dropped")
	default:
	}
	h.Publish(ev(7, 4)) // no panic on a dropped stream; it is out of the hub
}

func TestCapOnOpenSubscribers(t *testing.T) {
	t.Parallel()
	h := push.New(push.Config{MaxSubscribers: 2})
	w, ok1 := h.Watch(1)
	s, _, ok2 := h.Subscribe(7)
	if !ok1 || !ok2 {
		t.Fatal("refused below the cap")
	}
	if _, ok := h.Watch(2); ok {
		t.Error("a third waiter was accepted with MaxSubscribers 2")
	}
	if _, _, ok := h.Subscribe(8); ok {
		t.Error("a third stream was accepted with MaxSubscribers 2")
	}
	w.Close()
	w.Close() // idempotent: frees one slot, not two
	if got := h.Open(); got != 1 {
		t.Errorf("Open() = %d after closing the waiter twice, want 1", got)
	}
	s.Close()
	if _, ok := h.Watch(2); !ok {
		t.Error("refused after every slot was freed")
	}
}

func TestWaiterWakesOnItsPaymentOnly(t *testing.T) {
	t.Parallel()
	h := push.New(push.Config{})
	w, _ := h.Watch(100002)
	defer w.Close()
	h.Publish(ev(7, 1)) // payment 100001
	select {
	case <-w.Changed():
		t.Fatal("woken by another payment's event")
	default:
	}
	h.Publish(ev(7, 2)) // payment 100002
	h.Publish(ev(7, 2)) // again: still one wake-up pending, never blocks
	<-w.Changed()
}

func TestDrain(t *testing.T) {
	t.Parallel()
	h := push.New(push.Config{})
	h.Drain()
	h.Drain()
	<-h.Draining()
}

// TestDrainWaitsForOpen: Drain returns once the last open waiter and
// stream closed, not before.
func TestDrainWaitsForOpen(t *testing.T) {
	t.Parallel()
	h := push.New(push.Config{DrainWait: time.Hour})
	w, _ := h.Watch(1)
	s, _, _ := h.Subscribe(7)
	done := make(chan struct{})
	go func() { defer close(done); h.Drain() }()
	<-h.Draining()
	w.Close()
	select {
	case <-done:
		t.Fatal("Drain returned with a stream open")
	default:
	}
	s.Close()
	<-done
}
