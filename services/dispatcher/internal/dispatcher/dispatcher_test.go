package dispatcher

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

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

// A finished record's result goes into the transaction only once every
// record below it has finished: the results in the transaction are then
// exactly those of the records below the offset it commits (the
// watermark), so a record consumed again from that offset never had its
// outcome committed before.
func TestResultsGoOutBelowTheWatermarkOnly(t *testing.T) {
	t.Parallel()
	p := newPart()
	for off := int64(10); off < 16; off++ {
		p.pending = append(p.pending, &entry{offset: off})
		p.next = off + 1
	}
	var out []int64
	steps := []struct {
		finish int64
		want   []int64 // offsets put in by this step
	}{
		{11, nil}, // behind 10, unfinished: held
		{13, nil},
		{10, []int64{10, 11}},
		{12, []int64{12, 13}},
		{15, nil},
		{14, []int64{14, 15}},
	}
	for _, s := range steps {
		for _, e := range p.live() {
			if e.offset == s.finish {
				e.done = true
			}
		}
		var got []int64
		for _, e := range p.finished() {
			got = append(got, e.offset)
		}
		if diff := cmp.Diff(s.want, got); diff != "" {
			t.Errorf("after finishing %d, put in (-want +got):\n%s", s.finish, diff)
		}
		out = append(out, got...)
		for _, o := range out {
			if o >= p.watermark() {
				t.Errorf("after finishing %d: result of %d put in, at or above the watermark %d", s.finish, o, p.watermark())
			}
		}
	}

	// Trimming, compaction included, keeps the place.
	q := newPart()
	for off := range int64(3000) {
		q.pending = append(q.pending, &entry{offset: off, done: off < 2500})
		q.next = off + 1
	}
	if n := len(q.finished()); n != 2500 {
		t.Fatalf("put in %d, want 2500", n)
	}
	q.trim(2500) // compacts: head 2500 > 1024 and more than half
	if q.head != 0 || len(q.live()) != 500 {
		t.Fatalf("after trim: head %d, %d live, want 0 and 500", q.head, len(q.live()))
	}
	if n := len(q.finished()); n != 0 {
		t.Errorf("after trim, %d put in again, want 0", n)
	}
	q.live()[0].done = true
	if got := q.finished(); len(got) != 1 || got[0].offset != 2500 {
		t.Errorf("after finishing 2500, put in %d records, want just 2500", len(got))
	}
}

func TestReadyUsersServeTheEarliestFetchedRecordFirst(t *testing.T) {
	t.Parallel()
	// Records of users a, b and c, named by user and fetch order: a1, b2,
	// a3, c4, a5. One record of a user in flight at a time; when it
	// finishes, the user's next record takes its place by fetch order,
	// ahead of records fetched after it (round-robin served c4 before a3:
	// a3, and every outcome behind it in its partition, waited a whole
	// round of the users with work).
	users := map[string]*userQueue{}
	for seq, key := range []string{"a", "b", "a", "c", "a"} {
		u := users[key]
		if u == nil {
			u = &userQueue{key: key}
			users[key] = u
		}
		u.items = append(u.items, &item{seq: uint64(seq + 1)})
	}
	var r readyUsers
	for _, key := range []string{"c", "b", "a", "b"} { // any order; b twice: one place
		r.push(users[key])
	}
	var got []string
	serve := func() *userQueue {
		u := r.pop()
		u.inReady = false
		got = append(got, fmt.Sprintf("%s%d", u.key, u.items[0].seq))
		return u
	}
	finish := func(u *userQueue) {
		u.items = u.items[1:]
		if len(u.items) > 0 {
			r.push(u)
		}
	}
	a := serve() // a1
	b := serve() // b2, while a1 runs
	finish(a)    // a3 is ready now
	finish(b)
	for len(r) > 0 {
		finish(serve())
	}
	want := "[a1 b2 a3 c4 a5]"
	if fmt.Sprint(got) != want {
		t.Errorf("served %v, want %s", got, want)
	}
}
