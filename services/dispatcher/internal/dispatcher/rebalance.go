package dispatcher

// The group's rebalance callbacks: partitions assigned, revoked and lost,
// and the pacer's share that follows them.

import (
	"context"
	"errors"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/finsvc/finance/pkg/kafka"
)

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
