package dispatcher

// Ending a transaction: commit the outcomes with each partition's
// watermark, or abort and restart from the committed offsets.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/finsvc/finance/pkg/kafka"
	"github.com/finsvc/finance/pkg/payment"
)

// commit ends the open transaction, committing the outcomes produced so far
// with the offsets of the lowest unfinished record per partition, and begins
// the next one. An aborted transaction (rebalance, produce failure) rewinds
// the session to the committed offsets; the pipeline then starts over from
// there, reusing the results it already has.
func (d *Dispatcher) commit(ctx context.Context) error {
	turn := make(chan struct{})
	d.pollMu.Lock()
	d.commitTurn = turn
	if d.pollCancel != nil {
		d.pollCancel()
	}
	d.pollMu.Unlock()
	d.txnMu.Lock()
	defer d.txnMu.Unlock()
	// txnMu is ours: the poller, woken now, queues on its read lock until
	// this commit ends.
	d.pollMu.Lock()
	d.commitTurn = nil
	d.pollMu.Unlock()
	close(turn)

	d.mu.Lock()
	skip := !d.st.dirty && !d.st.rebalanced && d.st.produceErr == nil
	d.mu.Unlock()
	if skip {
		return nil // nothing finished since the last commit
	}
	return d.commitLocked(ctx)
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
	s.ready = nil
	s.buffered = 0
	d.freedLocked()
	s.produceErr = nil
	s.produced = map[payment.Status]int{}
	s.lettered = map[string]int{}
	s.dirty = false
	return resume
}
