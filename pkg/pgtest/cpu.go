package pgtest

import (
	"context"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/finsvc/finance/pkg/procstat"
)

// CPUMeter measures the CPU that a benchmark's own process and the
// PostgreSQL backends of its database use, read from /proc: what a request
// costs on both sides of the connection.
type CPUMeter struct {
	self     int
	backends []int
	before   [2]map[int]float64
}

// StartCPU starts measuring this process and the backends now connected to
// pool's database (open the pool's connections first).
func StartCPU(tb testing.TB, pool *pgxpool.Pool) *CPUMeter {
	tb.Helper()
	rows, _ := pool.Query(context.Background(), `SELECT pid FROM pg_stat_activity WHERE datname = current_database()`)
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		tb.Fatal(err)
	}
	m := &CPUMeter{self: os.Getpid()}
	for _, p := range pids {
		m.backends = append(m.backends, int(p))
	}
	m.before = [2]map[int]float64{procstat.PIDs(procstat.Dir, m.self), procstat.PIDs(procstat.Dir, m.backends...)}
	return m
}

// Report adds the CPU used since StartCPU, per one of n units (a request, a
// payment), as the metrics "cpu-µs/<unit>" (this process) and
// "db-cpu-µs/<unit>" (the backends).
func (m *CPUMeter) Report(b *testing.B, n int, unit string) {
	self := procstat.Used(m.before[0], procstat.PIDs(procstat.Dir, m.self))
	db := procstat.Used(m.before[1], procstat.PIDs(procstat.Dir, m.backends...))
	b.ReportMetric(self*1e6/float64(n), "cpu-µs/"+unit)
	b.ReportMetric(db*1e6/float64(n), "db-cpu-µs/"+unit)
}
