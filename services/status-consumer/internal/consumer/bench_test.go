package consumer

import (
	"context"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/finsvc/finance/pkg/procstat"
)

// BenchmarkConsumer measures how fast one consumer applies outcomes that
// are already waiting: 5,000 payments of 5,000 users, each with its
// processing and its succeeded outcome (10,000 outcomes over 12
// partitions), from the consumer's start until the last is applied and
// its event emitted. It runs the batch path (one transaction per poll) and,
// for comparison, the record-by-record path (one transaction per outcome,
// as before batching). It needs PostgreSQL (PGTEST_URL) and runs an
// in-process broker, whose CPU is counted in cpu-µs/outcome (this test
// process: consumer, broker, producer idle); pg-cpu-µs/outcome is every
// local postgres process's, so run it on a quiet machine:
//
//	go test ./services/status-consumer/internal/consumer -run '^$' -bench Consumer -benchtime 1x
func BenchmarkConsumer(b *testing.B) {
	for _, path := range []string{"batch", "record-by-record"} {
		b.Run(path, func(b *testing.B) {
			const payments = 5000
			var elapsed time.Duration
			var cpu, pgCPU float64
			var allocBytes uint64
			for range b.N {
				b.StopTimer()
				h := newHarness(b)
				ctx := context.Background()
				uids := make([]uuid.UUID, payments)
				for i := range uids {
					uids[i] = uidOf(100001 + int64(i))
				}
				seed := &pgx.Batch{}
				seed.Queue(`INSERT INTO wallets (user_id, balance, held, event_seq) SELECT g, 10000, 1000, 1 FROM generate_series(1, $1::int) g`, payments)
				seed.Queue(`INSERT INTO payments (id, uid, user_id, merchant_id, amount, status, idempotency_key, request_hash, hold)
					SELECT 100000 + g, ($2::uuid[])[g], g, 2, -1000, 'accepted', 'k-' || g, 'h', 1000 FROM generate_series(1, $1::int) g`, payments, uids)
				seed.Queue(`INSERT INTO payment_transitions (payment_id, user_id, user_seq, from_status, to_status, actor)
					SELECT 100000 + g, g, 1, '', 'accepted', 'gateway' FROM generate_series(1, $1::int) g`, payments)
				if err := h.pool.SendBatch(ctx, seed).Close(); err != nil {
					b.Fatal(err)
				}
				var inputs []input
				for u := int64(1); u <= payments; u++ {
					inputs = append(inputs, outcome(100000+u, u, processing, ""), outcome(100000+u, u, succeeded, ""))
				}
				h.send(b, inputs...)

				cpu0, err := procstat.PID(procstat.Dir, os.Getpid())
				if err != nil {
					b.Fatal(err)
				}
				pg0, err := procstat.ByName(procstat.Dir, "postgres")
				if err != nil {
					b.Fatal(err)
				}
				var mem0 runtime.MemStats
				runtime.ReadMemStats(&mem0)
				start := time.Now()
				b.StartTimer()
				c := h.start(b)
				c.recordByRecord = path == "record-by-record"
				for testutil.ToFloat64(c.m.events.WithLabelValues("false")) < 2*payments {
					time.Sleep(time.Millisecond)
				}
				b.StopTimer()
				elapsed += time.Since(start)
				cpu1, _ := procstat.PID(procstat.Dir, os.Getpid())
				pg1, _ := procstat.ByName(procstat.Dir, "postgres")
				var mem1 runtime.MemStats
				runtime.ReadMemStats(&mem1)
				cpu += cpu1 - cpu0
				pgCPU += procstat.Used(pg0, pg1)
				allocBytes += mem1.TotalAlloc - mem0.TotalAlloc
				h.stop(b, c)
			}
			outcomes := float64(2 * payments * b.N)
			b.ReportMetric(outcomes/elapsed.Seconds(), "outcomes/s")
			b.ReportMetric(cpu/outcomes*1e6, "cpu-µs/outcome")
			b.ReportMetric(pgCPU/outcomes*1e6, "pg-cpu-µs/outcome")
			b.ReportMetric(float64(allocBytes)/outcomes, "alloc-B/outcome")
		})
	}
}
