package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/finsvc/finance/pkg/dlq"
	"github.com/finsvc/finance/pkg/kafka"
	"github.com/finsvc/finance/pkg/payment"
	"github.com/finsvc/finance/pkg/wire"
)

// state is the pipeline's bookkeeping, guarded by Dispatcher.mu.
type state struct {
	// gen changes when an aborted transaction rewinds the session: work
	// of an older generation is never produced.
	gen   uint64
	parts map[int32]*partState
	users map[string]*userQueue
	ready ring
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
	// next is the offset after the last record taken, -1 before any.
	next     int64
	buffered int
	paused   bool
}

type entry struct {
	offset int64
	done   bool
	res    *result
}

// result is what dispatching one record produces in the transaction: an
// outcome, a dead letter of the record, or both (an unknown outcome).
type result struct {
	outcome *wire.Outcome
	letter  *dlq.Letter
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
		p.head = 0
	}
}

// item is one record on its way through the pipeline.
type item struct {
	rec      *kgo.Record
	entry    *entry
	part     *partState
	gen      uint64
	fetched  time.Time
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
}

// ring is the FIFO of users with work ready: served round-robin.
type ring struct {
	q    []*userQueue
	head int
}

func (r *ring) push(u *userQueue) {
	if u.inReady {
		return
	}
	u.inReady = true
	r.q = append(r.q, u)
}

func (r *ring) pop() *userQueue {
	if r.head == len(r.q) {
		r.q, r.head = r.q[:0], 0
		return nil
	}
	u := r.q[r.head]
	r.q[r.head] = nil
	r.head++
	if r.head > 1024 && r.head*2 > len(r.q) {
		r.q = append([]*userQueue(nil), r.q[r.head:]...)
		r.head = 0
	}
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
		e := &entry{offset: r.Offset}
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
		u.items = append(u.items, &item{rec: r, entry: e, part: ps, gen: s.gen, fetched: now})
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

// commitLocked ends the transaction; txnMu is held.
func (d *Dispatcher) commitLocked(ctx context.Context) error {
	// Ending must work even when the grace period cut the work short.
	ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	start := time.Now()
	defer func() { d.m.commitDuration.Observe(time.Since(start).Seconds()) }()
	// Surface produce failures before deciding: a transaction with a lost
	// outcome must not commit its offsets.
	flushErr := d.sess.Client().Flush(ectx)

	d.mu.Lock()
	failure := d.st.produceErr
	if flushErr != nil {
		failure = errors.Join(failure, fmt.Errorf("flush outcomes: %w", flushErr))
	}
	offsets := map[int32]int64{}
	for p, ps := range d.st.parts {
		if wm := ps.watermark(); wm >= 0 {
			offsets[p] = wm
		}
	}
	produced, lettered := d.st.produced, d.st.lettered
	d.st.produced, d.st.lettered = map[payment.Status]int{}, map[string]int{}
	d.st.dirty, d.st.rebalanced = false, false
	d.mu.Unlock()

	try := kgo.TryCommit
	if failure != nil {
		try = kgo.TryAbort
	}
	// The session would commit everything polled; only what is finished
	// may be committed, so the request is rewritten to the watermarks.
	rewrite := func(req *kmsg.TxnOffsetCommitRequest) error {
		var topics []kmsg.TxnOffsetCommitRequestTopic
		for _, t := range req.Topics {
			if t.Topic != kafka.TopicRequested {
				continue
			}
			t.Partitions = t.Partitions[:0]
			for p, off := range offsets {
				rp := kmsg.NewTxnOffsetCommitRequestTopicPartition()
				rp.Partition = p
				rp.Offset = off
				rp.LeaderEpoch = -1
				rp.Metadata = &req.MemberID
				t.Partitions = append(t.Partitions, rp)
			}
			topics = append(topics, t)
		}
		req.Topics = topics
		return nil
	}
	committed, err := d.sess.End(kgo.PreTxnCommitFnContext(ectx, rewrite), try)
	if err != nil {
		d.m.transactions.WithLabelValues("failed").Inc()
		return fmt.Errorf("end transaction: %w", err)
	}
	var resume []int32
	d.mu.Lock()
	if committed {
		d.m.transactions.WithLabelValues("committed").Inc()
		for status, n := range produced {
			d.m.outcomes.WithLabelValues(string(status)).Add(float64(n))
		}
		for reason, n := range lettered {
			d.m.deadLetters.WithLabelValues(reason).Add(float64(n))
		}
		for p, off := range offsets {
			if ps := d.st.parts[p]; ps != nil {
				ps.trim(off)
				if ps.paused && !d.full(ps) {
					ps.paused = false
					resume = append(resume, p)
				}
			}
		}
	} else {
		d.m.transactions.WithLabelValues("aborted").Inc()
		reason := "group rebalanced"
		if failure != nil {
			reason = failure.Error()
		}
		d.log.WarnContext(ctx, "transaction aborted; uncommitted records will be consumed again (known results are reused)", "reason", reason)
		resume = d.resetLocked()
	}
	if len(resume) > 0 {
		// Under d.mu, in the order of the state changes (see poll).
		d.sess.Client().ResumeFetchPartitions(map[string][]int32{kafka.TopicRequested: resume})
	}
	d.mu.Unlock()
	if err := d.sess.Begin(); err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	return nil
}

// resetLocked restarts the pipeline after an aborted transaction rewound
// the session to the committed offsets; d.mu and txnMu are held. It returns
// the partitions to resume.
func (d *Dispatcher) resetLocked() []int32 {
	s := &d.st
	s.gen++
	var resume []int32
	for p, ps := range s.parts {
		for _, e := range ps.live() {
			if e.done && e.res != nil {
				s.salvage[salvageKey{p, e.offset}] = e.res
			}
		}
		if ps.paused {
			resume = append(resume, p)
		}
		s.parts[p] = newPart()
	}
	for k, u := range s.users {
		u.inReady = false
		if u.busy {
			// Its call runs on; the user's redelivered records wait for it.
			u.items = u.items[:1]
			continue
		}
		delete(s.users, k)
	}
	s.ready = ring{}
	s.buffered = 0
	d.freedLocked()
	s.produceErr = nil
	s.produced = map[payment.Status]int{}
	s.lettered = map[string]int{}
	s.dirty = false
	return resume
}

// assigned is the session's OnPartitionsAssigned.
func (d *Dispatcher) assigned(ctx context.Context, cl *kgo.Client, assigned map[string][]int32) {
	d.mu.Lock()
	for _, p := range assigned[kafka.TopicRequested] {
		if d.st.parts[p] == nil {
			d.st.parts[p] = newPart()
		}
	}
	owned := len(d.st.parts)
	d.mu.Unlock()
	total := d.total(ctx, cl, assigned[kafka.TopicRequested])
	d.share.SetShare(owned, total)
	d.m.owned.Set(float64(owned))
	if len(assigned[kafka.TopicRequested]) == 0 {
		return
	}
	d.log.InfoContext(ctx, "partitions assigned", "partitions", assigned[kafka.TopicRequested], "owned", owned, "total", total)
}

// errRevoked is the cause of a dispatch cancelled because its partition was
// revoked or lost.
var errRevoked = errors.New("partition revoked")

// revokeWait bounds how long a revocation waits for the cancelled calls of
// its partitions to return.
const revokeWait = 10 * time.Second

// revoked is the session's OnPartitionsRevoked and OnPartitionsLost: the
// partitions' queued records are dropped (the new owner reads them from the
// committed offset), their in-flight calls are cancelled and their results
// not produced, and the share shrinks before the rebalance completes.
//
// The rebalance waits (up to revokeWait) for the cancelled calls to return,
// so that this replica no longer calls the processor for these partitions
// once the new owner may. A cancelled call may have reached the processor:
// the new owner's call is then a replay under the same key (proposed API),
// or is not made at all because the payment is claimed (as-is API); a
// payment certainly not sent has its claim released before the wait ends.
// Waiting never needs txnMu or d.mu (the session may be ending a
// transaction meanwhile, and franz-go holds that up until this returns).
func (d *Dispatcher) revoked(ctx context.Context, cl *kgo.Client, revoked map[string][]int32) {
	d.mu.Lock()
	s := &d.st
	gone := map[int32]bool{}
	for _, p := range revoked[kafka.TopicRequested] {
		if s.parts[p] != nil {
			gone[p] = true
			delete(s.parts, p)
		}
	}
	var calls []chan struct{}
	if len(gone) > 0 {
		s.rebalanced = true
		for k := range s.salvage {
			if gone[k.partition] {
				delete(s.salvage, k)
			}
		}
		for k, u := range s.users {
			if u.busy && len(u.items) > 0 && gone[u.items[0].rec.Partition] {
				it := u.items[0]
				it.cancel(errRevoked)
				calls = append(calls, it.executed)
			}
			keep := u.items[:0]
			for i, it := range u.items {
				if (i == 0 && u.busy) || !gone[it.rec.Partition] {
					keep = append(keep, it)
				} else if it.gen == s.gen {
					s.buffered--
					d.freedLocked()
				}
			}
			u.items = keep
			if len(u.items) == 0 && !u.busy {
				delete(s.users, k)
			}
		}
	}
	owned := len(s.parts)
	d.mu.Unlock()
	d.m.revokedCalls.Add(float64(len(calls)))
	waitStart := time.Now()
	timeout := time.NewTimer(revokeWait)
	defer timeout.Stop()
wait:
	for _, c := range calls {
		select {
		case <-c:
		case <-timeout.C:
			d.log.WarnContext(ctx, "revoked partitions: cancelled calls still running; the rebalance goes on without them",
				"partitions", revoked[kafka.TopicRequested], "wait", revokeWait)
			break wait
		}
	}
	var ps []int32
	for p := range gone {
		ps = append(ps, p)
	}
	if len(ps) > 0 {
		cl.ResumeFetchPartitions(map[string][]int32{kafka.TopicRequested: ps})
	}
	total := d.total(ctx, cl, nil)
	d.share.SetShare(owned, total)
	d.m.owned.Set(float64(owned))
	if len(gone) == 0 {
		return
	}
	d.log.InfoContext(ctx, "partitions revoked", "partitions", revoked[kafka.TopicRequested], "owned", owned, "total", total,
		"calls_cancelled", len(calls), "cancel_wait", time.Since(waitStart).String())
}

// total returns the partition count of payments.requested, asking the
// cluster the first time and whenever a partition beyond it shows up.
func (d *Dispatcher) total(ctx context.Context, cl *kgo.Client, seen []int32) int {
	d.mu.Lock()
	total := d.st.total
	d.mu.Unlock()
	need := total == 0
	for _, p := range seen {
		if int(p) >= total {
			need = true
		}
	}
	if !need {
		return total
	}
	mctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	topics, err := kadm.NewClient(cl).ListTopics(mctx, kafka.TopicRequested)
	if err == nil {
		if td, ok := topics[kafka.TopicRequested]; ok && td.Err == nil {
			total = len(td.Partitions)
		}
	} else {
		d.log.WarnContext(ctx, "partition count of payments.requested unknown", "err", err)
	}
	for _, p := range seen {
		total = max(total, int(p)+1)
	}
	d.mu.Lock()
	d.st.total = max(d.st.total, total)
	total = d.st.total
	d.mu.Unlock()
	return total
}

// publishProcessing tells clients early that the payment is being sent. It
// is best effort and outside the transaction: the status consumer ignores it
// when it arrives after the final outcome, and a redelivery repeats it.
func (d *Dispatcher) publishProcessing(ctx context.Context, log *slog.Logger, req wire.Requested) {
	val, err := wire.EncodeOutcome(wire.Outcome{
		PaymentID:  req.PaymentID,
		PaymentUID: req.PaymentUID,
		UserID:     req.UserID,
		Status:     payment.StatusProcessing,
		DecidedAt:  time.Now(),
	})
	if err != nil {
		log.ErrorContext(ctx, "encode processing outcome", "err", err)
		return
	}
	// Not bound to ctx, the dispatch's context, which ends with the
	// dispatch: a record still buffered then would be dropped. Closing the
	// early client bounds it instead.
	d.early.Produce(context.WithoutCancel(ctx), &kgo.Record{Topic: kafka.TopicOutcomes, Key: kafka.UserKey(req.UserID), Value: val},
		func(_ *kgo.Record, err error) {
			if err != nil {
				d.m.processingDropped.Inc()
				log.WarnContext(ctx, "processing outcome not published", "err", err)
			}
		})
}

// deadLetter is the result of a record that can never be dispatched: its
// dead letter, produced in the transaction that commits past the record, so
// the record is never dropped and never blocks its partition.
func (d *Dispatcher) deadLetter(ctx context.Context, it *item, reason string, err error, paymentID, userID int64) *result {
	r := it.rec
	d.log.ErrorContext(ctx, "dead-lettering invalid payments.requested record", "reason", reason,
		"topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "key", string(r.Key),
		"payment_id", paymentID, "user_id", userID, "dlq_topic", kafka.DLQTopic(r.Topic), "err", err)
	return &result{letter: &dlq.Letter{
		Reason:    reason,
		Err:       err,
		Attempts:  1,
		FirstSeen: it.fetched,
		Source:    Source,
		PaymentID: paymentID,
		UserID:    userID,
	}}
}

// outcomeStatus is the final status a processor result is published with:
// anything but succeeded or failed is unknown, for the reconciler. It is
// also the label of dispatcher_outcomes_total.
func outcomeStatus(s payment.Status) payment.Status {
	switch s {
	case payment.StatusSucceeded, payment.StatusFailed:
		return s
	default:
		return payment.StatusUnknown
	}
}
