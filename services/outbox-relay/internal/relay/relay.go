// Package relay publishes the transactional outbox to Kafka.
//
// Exactly one relay publishes at a time: it holds a PostgreSQL session
// advisory lock on a dedicated connection, and every other replica stands by,
// retrying the lock. The leader reads the outbox in id order, produces every
// record with the idempotent producer (acks=all), and deletes only the rows
// Kafka acknowledged, in order. A crash between produce and delete publishes a
// record again (at least once); a record is never deleted before Kafka has it.
//
// Per-user order holds because the gateway writes a user's outbox rows while
// holding that user's wallet row lock, so one user's ids increase in commit
// order, and one user's records share a key, hence a partition.
package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/finsvc/finance/pkg/clock"
	"github.com/finsvc/finance/pkg/obs"
	"github.com/finsvc/finance/pkg/outbox"
	"github.com/finsvc/finance/pkg/postgres"
)

// LockKey is the PostgreSQL advisory lock key that elects the one active relay.
const LockKey int64 = 0x66696e6f75746278 // "finoutbx"

// ErrNotConnected is returned by Ready while the relay has no PostgreSQL session.
var ErrNotConnected = errors.New("outbox relay: not connected to PostgreSQL")

// errNotProduced marks the records of a batch left unproduced after an
// earlier record of the batch failed.
var errNotProduced = errors.New("not produced: an earlier record of the batch failed")

// Config tunes a Relay.
type Config struct {
	// DatabaseURL is used for the dedicated connection that holds the lock,
	// listens for wake-ups and reads and deletes outbox rows.
	DatabaseURL string
	// BatchSize is the most rows published per batch.
	BatchSize int
	// PollInterval is the fallback poll when no notification arrives.
	PollInterval time.Duration
	// Linger is how long the relay waits after a wake-up before it reads
	// the outbox, so that the acceptances of the next few milliseconds go
	// in the same batch: one read, one produce and one delete for many
	// rows instead of one each. 0 reads at once.
	Linger time.Duration
	// LockRetry is how often a standby relay retries the advisory lock.
	LockRetry time.Duration
	// BacklogInterval is how often the backlog gauges are sampled.
	BacklogInterval time.Duration
}

// state is where a relay is in the election.
type state int32

const (
	stateDisconnected state = iota
	stateStandby
	stateLeader
)

// Relay publishes outbox rows to Kafka. Create it with New and start it with Run.
type Relay struct {
	cfg    Config
	pool   *pgxpool.Pool
	kc     *kgo.Client
	logger *slog.Logger
	m      *metrics
	state  atomic.Int32
}

// New returns a Relay that produces through kc (an idempotent producer) and
// samples the backlog through pool. Its metrics are registered on reg.
func New(cfg Config, pool *pgxpool.Pool, kc *kgo.Client, logger *slog.Logger, reg prometheus.Registerer) *Relay {
	return &Relay{cfg: cfg, pool: pool, kc: kc, logger: logger, m: newMetrics(reg)}
}

// ProducerOpts are the Kafka client settings the relay relies on: idempotent
// writes with acks=all (franz-go's defaults, stated so that nobody turns them
// off) and a bound on how long a record may wait for delivery before the batch
// counts as failed and is retried.
func ProducerOpts(deliveryTimeout time.Duration) []kgo.Opt {
	return []kgo.Opt{
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordDeliveryTimeout(deliveryTimeout),
	}
}

// Leader reports whether this relay currently holds the lock and publishes.
func (r *Relay) Leader() bool { return state(r.state.Load()) == stateLeader }

// Ready reports nil while the relay is the leader or a connected standby,
// and ErrNotConnected while it has no PostgreSQL session.
func (r *Relay) Ready(context.Context) error {
	if state(r.state.Load()) == stateDisconnected {
		return ErrNotConnected
	}
	return nil
}

func (r *Relay) setState(s state) {
	r.state.Store(int32(s))
	if s == stateLeader {
		r.m.leader.Set(1)
	} else {
		r.m.leader.Set(0)
	}
}

// Run takes part in the election and, while leader, publishes the outbox,
// until ctx ends. A batch in flight when ctx ends is finished: what Kafka
// acknowledged is deleted, the rest stays for the next leader.
func (r *Relay) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { r.sampleBacklog(ctx); return nil })
	g.Go(func() error { r.elect(ctx); return nil })
	return g.Wait()
}

// elect runs sessions until ctx ends, reconnecting with backoff when one fails.
func (r *Relay) elect(ctx context.Context) {
	bo := newBackoff(10 * time.Second)
	for {
		connected, err := r.session(ctx)
		r.setState(stateDisconnected)
		if ctx.Err() != nil {
			return
		}
		if connected {
			bo.Reset()
		}
		wait := bo.NextBackOff()
		r.logger.ErrorContext(ctx, "outbox relay session ended, reconnecting", "err", err, "retry_in", wait.String())
		if !sleep(ctx, wait) {
			return
		}
	}
}

// session opens the dedicated connection, waits for the lock and then leads
// until the connection fails or ctx ends. Closing the connection releases
// the lock, so a relay that loses its connection also stops publishing: every
// read and delete goes through that same connection.
func (r *Relay) session(ctx context.Context) (connected bool, err error) {
	cfg, err := sessionConfig(r.cfg.DatabaseURL)
	if err != nil {
		return false, err
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return false, fmt.Errorf("connect: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = conn.Close(cctx) // ends the session, which releases the advisory lock
	}()
	r.setState(stateStandby)
	r.logger.InfoContext(ctx, "outbox relay standing by for the lock")

	for {
		var locked bool
		if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, LockKey).Scan(&locked); err != nil {
			if ctx.Err() != nil {
				return true, nil
			}
			return true, fmt.Errorf("try advisory lock: %w", err)
		}
		if locked {
			break
		}
		if !sleep(ctx, r.cfg.LockRetry) {
			return true, nil
		}
	}

	r.setState(stateLeader)
	r.logger.InfoContext(ctx, "outbox relay is the leader")
	defer r.logger.InfoContext(ctx, "outbox relay gave up leadership")
	return true, r.lead(ctx, conn)
}

// sessionConfig is the dedicated connection's configuration: url, named
// outbox-relay in pg_stat_activity unless url names it, as the services'
// pools are named (pkg/postgres), so that PostgreSQL's CPU can be told by client
// (loadtest/pg-by-client.sh).
func sessionConfig(url string) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse database url: %w", err)
	}
	postgres.NameConnections(cfg, "outbox-relay")
	return cfg, nil
}

// lead publishes batches until ctx ends or the connection breaks. It publishes
// back to back while batches come back full, otherwise waits for a NOTIFY or
// the fallback poll.
func (r *Relay) lead(ctx context.Context, conn *pgx.Conn) error {
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{outbox.Channel}.Sanitize()); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("listen %s: %w", outbox.Channel, err)
	}
	bo := newBackoff(5 * time.Second)
	for ctx.Err() == nil {
		drainNotifications(ctx, conn)
		n, err := r.publishBatch(ctx, conn)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			r.m.publishErrors.Inc()
			if conn.IsClosed() {
				return fmt.Errorf("publish batch: %w", err)
			}
			wait := bo.NextBackOff()
			r.logger.ErrorContext(ctx, "publish outbox batch", "err", err, "retry_in", wait.String())
			sleep(ctx, wait)
			continue
		}
		bo.Reset()
		if n >= r.cfg.BatchSize {
			continue // more rows are likely waiting
		}
		if err := r.waitForWork(ctx, conn); err != nil {
			return err
		}
		if r.cfg.Linger > 0 {
			sleep(ctx, r.cfg.Linger)
		}
	}
	return nil
}

// waitForWork blocks until a NOTIFY on the outbox channel, the poll interval
// or ctx ends. Only a broken connection is an error.
func (r *Relay) waitForWork(ctx context.Context, conn *pgx.Conn) error {
	wctx, cancel := context.WithTimeout(ctx, r.cfg.PollInterval)
	defer cancel()
	if _, err := conn.WaitForNotification(wctx); err != nil && wctx.Err() == nil {
		return fmt.Errorf("wait for notification: %w", err)
	}
	if conn.IsClosed() && ctx.Err() == nil {
		return errors.New("wait for notification: connection closed")
	}
	return nil
}

// drainNotifications discards notifications already received, so that one
// batch answers every wake-up that arrived while the previous one ran.
func drainNotifications(ctx context.Context, conn *pgx.Conn) {
	done, cancel := context.WithCancel(ctx)
	cancel() // a done context returns buffered notifications without touching the connection
	for {
		if n, _ := conn.WaitForNotification(done); n == nil {
			return
		}
	}
}

const selectBatchSQL = `SELECT id, topic, key, payload, traceparent FROM outbox ORDER BY id LIMIT $1`

const deletePublishedSQL = `DELETE FROM outbox WHERE id = ANY($1)`

// publishBatch publishes up to BatchSize rows and deletes those Kafka
// acknowledged. It returns how many rows it read. It stops producing at the
// first failed record and deletes only the acknowledged prefix, so the failed
// record and everything after it are published again by the next batch.
func (r *Relay) publishBatch(ctx context.Context, conn *pgx.Conn) (int, error) {
	rows, err := conn.Query(ctx, selectBatchSQL, r.cfg.BatchSize)
	if err != nil {
		return 0, fmt.Errorf("select outbox batch: %w", err)
	}
	recs, err := pgx.CollectRows(rows, pgx.RowToStructByName[outbox.Record])
	if err != nil {
		return 0, fmt.Errorf("select outbox batch: %w", err)
	}
	if len(recs) == 0 {
		return 0, nil
	}
	start := time.Now()
	r.m.batches.Inc()

	errs := r.produce(ctx, recs)
	acked := 0
	for acked < len(recs) && errs[acked] == nil {
		acked++
	}
	var failed error
	if acked < len(recs) {
		rec := recs[acked]
		failed = fmt.Errorf("produce outbox record %d to %s: %w", rec.ID, rec.Topic, errs[acked])
	}

	if acked > 0 {
		ids := make([]int64, acked)
		for i := range ids {
			ids[i] = recs[i].ID
		}
		// Kafka has these records: delete them even when shutting down,
		// or they would be published once more by the next leader.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		_, err := conn.Exec(dctx, deletePublishedSQL, ids)
		cancel()
		if err != nil {
			return len(recs), errors.Join(failed, fmt.Errorf("delete %d published outbox records: %w", acked, err))
		}
		r.m.published.Add(float64(acked))
	}
	r.m.batchDuration.Observe(time.Since(start).Seconds())
	return len(recs), failed
}

// produce sends recs in order and waits until each is acknowledged or has
// failed. errs[i] is nil for an acknowledged record. After the first failure
// no further record is produced.
func (r *Relay) produce(ctx context.Context, recs []outbox.Record) []error {
	errs := make([]error, len(recs))
	var (
		wg     sync.WaitGroup
		failed atomic.Bool
	)
	for i, rec := range recs {
		if failed.Load() {
			errs[i] = errNotProduced
			continue
		}
		wg.Add(1)
		kr := &kgo.Record{Topic: rec.Topic, Key: rec.Key, Value: rec.Payload, Context: ctx}
		if rec.TraceParent != nil {
			// The record continues the trace of the request that wrote
			// it: its "publish" span (kafka.BaseOpts' kotel hooks) is a
			// child of the stored context and goes into its headers.
			kr.Context = obs.WithTraceParent(ctx, *rec.TraceParent)
		}
		r.kc.Produce(ctx, kr, func(_ *kgo.Record, err error) {
			if err != nil {
				failed.Store(true)
			}
			errs[i] = err
			wg.Done()
		})
	}
	// Send what lingers now rather than after the linger: the batch is complete.
	_ = r.kc.Flush(ctx)
	wg.Wait()
	return errs
}

// sampleBacklog updates the backlog gauges every BacklogInterval until ctx ends.
func (r *Relay) sampleBacklog(ctx context.Context) {
	t := time.NewTicker(r.cfg.BacklogInterval)
	defer t.Stop()
	for {
		var (
			n   int64
			age float64
		)
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := r.pool.QueryRow(qctx, `
			SELECT count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8
			FROM outbox`).Scan(&n, &age)
		cancel()
		switch {
		case err == nil:
			r.m.backlog.Set(float64(n))
			r.m.oldestAge.Set(age)
		case ctx.Err() == nil:
			r.logger.WarnContext(ctx, "sample outbox backlog", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// newBackoff returns the relay's retry schedule: exponential with jitter,
// capped at maxInterval, never giving up (a relay must keep trying).
func newBackoff(maxInterval time.Duration) *backoff.ExponentialBackOff {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = 100 * time.Millisecond
	bo.MaxInterval = maxInterval
	bo.MaxElapsedTime = 0
	bo.Reset()
	return bo
}

// sleep waits d or until ctx ends, and reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	return clock.Sleep(ctx, d) == nil
}
