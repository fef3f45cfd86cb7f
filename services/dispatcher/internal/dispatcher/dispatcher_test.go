package dispatcher

import (
	"testing"

	"github.com/finsvc/finance/pkg/payment"
)

func TestOutcomeStatus(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, want payment.Status
	}{
		{payment.StatusSucceeded, payment.StatusSucceeded},
		{payment.StatusFailed, payment.StatusFailed},
		{payment.StatusUnknown, payment.StatusUnknown},
		// A result that is not final is never published as such.
		{payment.StatusProcessing, payment.StatusUnknown},
		{"", payment.StatusUnknown},
	}
	for _, tt := range tests {
		if got := outcomeStatus(tt.in); got != tt.want {
			t.Errorf("outcomeStatus(%s) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestWatermarkIsLowestUnfinishedRecord(t *testing.T) {
	t.Parallel()
	p := newPart()
	if got := p.watermark(); got != -1 {
		t.Errorf("empty partition: watermark %d, want -1 (unknown)", got)
	}
	for off := int64(10); off < 15; off++ {
		p.pending = append(p.pending, &entry{offset: off})
		p.next = off + 1
	}
	steps := []struct {
		finish int64
		want   int64
	}{
		{11, 10}, // a later record finished first: commit point stays
		{13, 10},
		{10, 12}, // 10 and 11 done: the next unfinished is 12
		{12, 14},
		{14, 15}, // all done: after the last record taken
	}
	for _, s := range steps {
		for _, e := range p.live() {
			if e.offset == s.finish {
				e.done = true
			}
		}
		if got := p.watermark(); got != s.want {
			t.Errorf("after finishing %d: watermark %d, want %d", s.finish, got, s.want)
		}
	}
	p.trim(15)
	if n := len(p.live()); n != 0 {
		t.Errorf("after trimming the committed entries %d are left, want 0", n)
	}
	if got := p.watermark(); got != 15 {
		t.Errorf("after trim: watermark %d, want 15", got)
	}
}

func TestRingServesUsersRoundRobin(t *testing.T) {
	t.Parallel()
	// A user with many payments gets one turn per round like everyone
	// else: it is pushed back behind the others after each payment.
	heavy := &userQueue{key: "heavy"}
	a, b := &userQueue{key: "a"}, &userQueue{key: "b"}
	var r ring
	r.push(heavy)
	r.push(a)
	r.push(heavy) // already queued: no second place
	r.push(b)
	var got []string
	for range 6 {
		u := r.pop()
		if u == nil {
			break
		}
		u.inReady = false
		got = append(got, u.key)
		if u == heavy {
			r.push(heavy) // more payments left
		}
	}
	want := []string{"heavy", "a", "b", "heavy", "heavy", "heavy"}
	if len(got) != len(want) {
		t.Fatalf("served %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("served %v, want %v", got, want)
		}
	}
}
