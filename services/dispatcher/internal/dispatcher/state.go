package dispatcher

// The pipeline's bookkeeping: what is buffered per partition and per user,
// the ready users, and enqueueing polled records.

import (
	"container/heap"
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/finsvc/finance/pkg/kafka"
	"github.com/finsvc/finance/pkg/payment"
)

// state is the pipeline's bookkeeping, guarded by Dispatcher.mu.
type state struct {
	// gen changes when an aborted transaction rewinds the session: work
	// of an older generation is never produced.
	gen   uint64
	parts map[int32]*partState
	users map[string]*userQueue
	ready readyUsers
	// seq numbers the records in the order they were fetched (item.seq).
	seq uint64
	// inFlight counts records being dispatched; buffered counts records
	// queued or in flight in owned partitions.
	inFlight, buffered int
	// salvage keeps results learnt for records whose transaction was
	// aborted, so that their redelivery needs no second call.
	salvage map[salvageKey]*result
	// dirty: something finished since the last commit; rebalanced: a
	// partition was revoked or lost since then.
	dirty, rebalanced bool
	produceErr        error
	// produced counts the outcomes produced in the open transaction, by status.
	produced map[payment.Status]int
	// lettered counts the dead letters produced in the open transaction, by reason.
	lettered map[string]int
	stopping bool
	// total is the partition count of payments.requested (cached).
	total int
}

func newState() state {
	return state{
		parts:    map[int32]*partState{},
		users:    map[string]*userQueue{},
		salvage:  map[salvageKey]*result{},
		produced: map[payment.Status]int{},
		lettered: map[string]int{},
	}
}

type salvageKey struct {
	partition int32
	offset    int64
}

// partState tracks one owned partition: its fetched, uncommitted records
// in offset order, so that the commit point is the lowest unfinished one.
type partState struct {
	pending []*entry
	head    int
	// out indexes pending: the first record whose result is not in the
	// open transaction yet. Results go in in offset order only (see
	// emitLocked), so a transaction never holds the outcome of a record at
	// or above the offset it commits.
	out int
	// next is the offset after the last record taken, -1 before any.
	next     int64
	buffered int
	paused   bool
}

type entry struct {
	offset int64
	rec    *kgo.Record
	done   bool
	res    *result
}

func newPart() *partState { return &partState{next: -1} }

func (p *partState) live() []*entry { return p.pending[p.head:] }

// watermark is the offset to commit: the lowest unfinished record, or the
// offset after the last one taken when all are finished; -1 if unknown.
func (p *partState) watermark() int64 {
	for _, e := range p.live() {
		if !e.done {
			return e.offset
		}
	}
	return p.next
}

// trim forgets committed entries below offset.
func (p *partState) trim(offset int64) {
	for p.head < len(p.pending) && p.pending[p.head].offset < offset && p.pending[p.head].done {
		p.pending[p.head] = nil
		p.head++
	}
	if p.head > 1024 && p.head*2 > len(p.pending) {
		p.pending = append([]*entry(nil), p.pending[p.head:]...)
		p.out = max(p.out-p.head, 0)
		p.head = 0
	}
}

// finished returns the finished records not yet in the transaction that
// are no longer behind an unfinished one, in offset order, and takes them
// as put in: the records below the watermark.
func (p *partState) finished() []*entry {
	p.out = max(p.out, p.head)
	start := p.out
	for p.out < len(p.pending) && p.pending[p.out].done {
		p.out++
	}
	return p.pending[start:p.out]
}

// item is one record on its way through the pipeline.
type item struct {
	rec      *kgo.Record
	entry    *entry
	part     *partState
	gen      uint64
	fetched  time.Time
	seq      uint64 // fetch order (state.seq)
	salvaged *result
	// While the item is dispatched: cancel ends its context (its partition
	// was revoked), and executed is closed once it no longer calls the
	// processor or the guard.
	cancel   context.CancelCauseFunc
	executed chan struct{}
}

// userQueue holds one user's records in order; busy while its head is
// being dispatched.
type userQueue struct {
	key     string
	items   []*item
	busy    bool
	inReady bool
	// readySeq is the seq of its next record when it entered the ready
	// users: its place there.
	readySeq uint64
}

// readyUsers holds the users with a record ready to dispatch (their next
// one, none of theirs in flight), the user whose record was fetched first on
// top: dispatch follows the log as closely as per-user order allows. Outcomes
// go out in offset order per partition (emitLocked), so a record still
// queued holds back the outcomes of every record after it in its partition;
// served round-robin, a user's next record waited for a whole round of the
// other users with work, and so did the outcomes behind it. A user still
// gets one record in flight at a time, whatever it has queued, and waits for
// at most the users whose records came before its own.
type readyUsers []*userQueue

// push adds u, whose next record is u.items[0], unless it is there already.
func (r *readyUsers) push(u *userQueue) {
	if u.inReady {
		return
	}
	u.inReady = true
	u.readySeq = u.items[0].seq
	heap.Push(r, u)
}

// pop takes the user whose next record was fetched first, or nil.
func (r *readyUsers) pop() *userQueue {
	if len(*r) == 0 {
		return nil
	}
	return heap.Pop(r).(*userQueue)
}

// The heap.Interface of readyUsers; push and pop are its API.
func (r readyUsers) Len() int           { return len(r) }
func (r readyUsers) Less(i, j int) bool { return r[i].readySeq < r[j].readySeq }
func (r readyUsers) Swap(i, j int)      { r[i], r[j] = r[j], r[i] }
func (r *readyUsers) Push(x any)        { *r = append(*r, x.(*userQueue)) }
func (r *readyUsers) Pop() any {
	old := *r
	u := old[len(old)-1]
	old[len(old)-1] = nil
	*r = old[:len(old)-1]
	return u
}

// partCap is the records one partition may hold in memory.
func (d *Dispatcher) partCap() int {
	return max(d.cfg.MaxBuffered/max(len(d.st.parts), 1), 16)
}

// full reports whether a partition must stop fetching: too many records
// queued or in flight, or too many finished ones behind an unfinished head.
func (d *Dispatcher) full(p *partState) bool {
	c := d.partCap()
	return p.buffered >= c || len(p.live()) >= 4*c
}

// enqueue adds polled records to their users' queues and returns the
// partitions to pause. d.mu is held.
func (d *Dispatcher) enqueue(gen uint64, recs []*kgo.Record, now time.Time) []int32 {
	s := &d.st
	if gen != s.gen {
		return nil // polled before a rewind: they come again
	}
	var pause []int32
	for _, r := range recs {
		ps := s.parts[r.Partition]
		if ps == nil || r.Topic != kafka.TopicRequested {
			continue // revoked meanwhile
		}
		if ps.next >= 0 && r.Offset < ps.next {
			continue // already taken
		}
		e := &entry{offset: r.Offset, rec: r}
		ps.pending = append(ps.pending, e)
		ps.next = r.Offset + 1
		ps.buffered++
		s.buffered++
		key := string(r.Key)
		u := s.users[key]
		if u == nil {
			u = &userQueue{key: key}
			s.users[key] = u
		}
		s.seq++
		u.items = append(u.items, &item{rec: r, entry: e, part: ps, gen: s.gen, fetched: now, seq: s.seq})
		if !u.busy {
			s.ready.push(u)
		}
		if !ps.paused && d.full(ps) {
			ps.paused = true
			pause = append(pause, r.Partition)
		}
	}
	return pause
}
