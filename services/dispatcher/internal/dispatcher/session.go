package dispatcher

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/finsvc/finance/pkg/kafka"
)

// newSession returns the transactional consumer-producer of the dispatcher:
// it consumes payments.requested in group with read_committed isolation and
// produces under transactionalID. assigned and revoked keep the pipeline
// and the pacer's share in step with the group.
func newSession(brokers []string, extra []kgo.Opt, logger *slog.Logger, group, transactionalID string,
	assigned, revoked func(context.Context, *kgo.Client, map[string][]int32),
) (*kgo.GroupTransactSession, error) {
	sess, err := kgo.NewGroupTransactSession(append(append(kafka.BaseOpts(brokers, logger), extra...),
		kgo.TransactionalID(transactionalID),
		// Transactions end every commit interval; this only bounds a stuck one.
		kgo.TransactionTimeout(time.Minute),
		kgo.ConsumerGroup(group),
		// A crashed replica's partitions move after this long (the default
		// is 45 s): its users' payments wait no longer than that.
		kgo.SessionTimeout(10*time.Second),
		kgo.ConsumeTopics(kafka.TopicRequested),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Never skip a payment: a new group, or a lost commit, starts at the
		// beginning of what the topic still holds.
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		// A resumed partition waits for the in-flight fetch; keep it short.
		kgo.FetchMaxWait(250*time.Millisecond),
		kgo.OnPartitionsAssigned(assigned),
		kgo.OnPartitionsRevoked(revoked),
		kgo.OnPartitionsLost(revoked),
	)...)
	if err != nil {
		return nil, fmt.Errorf("kafka transact session: %w", err)
	}
	return sess, nil
}

// ReportBacklog samples the group's lag on payments.requested every
// interval until ctx ends, sets the backlog of each partition this replica
// owns and the expected drain time at rate() calls per second. Errors are
// logged at debug: the backlog is a convenience.
func (d *Dispatcher) ReportBacklog(ctx context.Context, adm *kadm.Client, interval time.Duration, rate func() float64) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		lags, err := adm.Lag(ctx, d.cfg.Group)
		if err == nil {
			if l, ok := lags[d.cfg.Group]; ok && l.Error() == nil {
				d.mu.Lock()
				owned := map[int32]bool{}
				for p := range d.st.parts {
					owned[p] = true
				}
				d.mu.Unlock()
				d.m.backlog.Reset()
				var total int64
				for p, pl := range l.Lag[kafka.TopicRequested] {
					if owned[p] && pl.Err == nil {
						d.m.backlog.WithLabelValues(strconv.Itoa(int(p))).Set(float64(pl.Lag))
						total += pl.Lag
					}
				}
				if r := rate(); r > 0 {
					d.m.drain.Set(float64(total) / r)
				} else {
					d.m.drain.Set(0)
				}
			}
		} else if ctx.Err() == nil {
			d.log.DebugContext(ctx, "consumer lag", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
