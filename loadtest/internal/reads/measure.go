package reads

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// RSS is a process's resident memory, from /proc/PID/status.
type RSS struct {
	PID int `json:"pid"`
	// PeakSampled is the highest VmRSS sampled once a second during the
	// run; HWM is VmHWM at the end (the peak since the process started,
	// which may predate the run).
	PeakSampled int64  `json:"peak_sampled_bytes"`
	HWM         int64  `json:"vm_hwm_bytes"`
	End         int64  `json:"end_bytes"`
	Err         string `json:"err,omitempty"`
}

// ParseStatus reads VmRSS and VmHWM (in bytes) from a /proc/PID/status.
func ParseStatus(b []byte) (rss, hwm int64, err error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	found := 0
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			return 0, 0, fmt.Errorf("%s: unexpected %q", k, v)
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("%s: %w", k, err)
		}
		if k == "VmRSS" {
			rss = n << 10
		} else {
			hwm = n << 10
		}
		found++
	}
	if found != 2 {
		return 0, 0, fmt.Errorf("no VmRSS and VmHWM (a kernel thread, or not Linux)")
	}
	return rss, hwm, nil
}

// PIDByName returns the one process whose command name (/proc/PID/comm)
// is name; several or none is an error.
func PIDByName(dir, name string) (int, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name(), "comm"))
		if err == nil && strings.TrimSpace(string(b)) == name {
			pids = append(pids, pid)
		}
	}
	switch len(pids) {
	case 0:
		return 0, fmt.Errorf("no process named %q on this machine", name)
	case 1:
		return pids[0], nil
	}
	return 0, fmt.Errorf("%d processes named %q (%v): give --target-pid", len(pids), name, pids)
}

// RSSSampler samples a process's VmRSS once a second.
type RSSSampler struct {
	path string
	mu   sync.Mutex
	r    RSS
	stop chan struct{}
	done chan struct{}
}

// SampleRSS starts sampling pid under dir (/proc).
func SampleRSS(dir string, pid int) *RSSSampler {
	s := &RSSSampler{path: filepath.Join(dir, strconv.Itoa(pid), "status"), r: RSS{PID: pid},
		stop: make(chan struct{}), done: make(chan struct{})}
	s.sample()
	go func() {
		defer close(s.done)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-t.C:
				s.sample()
			}
		}
	}()
	return s
}

func (s *RSSSampler) sample() {
	b, err := os.ReadFile(s.path)
	var rss, hwm int64
	if err == nil {
		rss, hwm, err = ParseStatus(b)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.r.Err = err.Error()
		return
	}
	s.r.PeakSampled = max(s.r.PeakSampled, rss)
	s.r.HWM, s.r.End = hwm, rss
}

// Stop ends the sampling and returns what it saw.
func (s *RSSSampler) Stop() RSS {
	close(s.stop)
	<-s.done
	s.sample()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.r
}

// DBStats is the database's work during the run. With pg_stat_statements
// loaded, Statements counts the statements the target's database ran;
// without it, the transactions committed and rows returned by that
// database (pg_stat_database), which counts each of the target's
// statements outside a transaction as one commit.
type DBStats struct {
	Source      string `json:"source"`
	Statements  int64  `json:"statements,omitempty"`
	XactCommit  int64  `json:"xact_commit"`
	TupReturned int64  `json:"tup_returned"`
	TupFetched  int64  `json:"tup_fetched"`
	Err         string `json:"err,omitempty"`
}

type dbReading struct {
	statements                 int64
	hasStatements              bool
	commits, returned, fetched int64
}

// ReadDB reads the counters of pool's database.
func readDB(ctx context.Context, pool *pgxpool.Pool) (dbReading, error) {
	var r dbReading
	// pg_stat_database is updated when a backend reports its counters
	// (at most every second or so): wait for them to settle.
	if _, err := pool.Exec(ctx, `SELECT pg_stat_clear_snapshot()`); err != nil {
		return r, err
	}
	if err := pool.QueryRow(ctx, `SELECT xact_commit, tup_returned, tup_fetched FROM pg_stat_database
		WHERE datname = current_database()`).Scan(&r.commits, &r.returned, &r.fetched); err != nil {
		return r, err
	}
	err := pool.QueryRow(ctx, `SELECT coalesce(sum(calls), 0)::bigint FROM pg_stat_statements
		WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&r.statements)
	r.hasStatements = err == nil
	return r, nil
}

// DBMeter reads the database's counters before and after the load.
type DBMeter struct {
	pool   *pgxpool.Pool
	before dbReading
	err    error
}

// StartDB reads the counters before the load.
func StartDB(ctx context.Context, pool *pgxpool.Pool) *DBMeter {
	m := &DBMeter{pool: pool}
	m.before, m.err = readDB(ctx, pool)
	return m
}

// Stop reads them again, after the counters of the load's last
// transactions were reported, and returns the difference.
func (m *DBMeter) Stop(ctx context.Context) DBStats {
	if m.err != nil {
		return DBStats{Err: m.err.Error()}
	}
	time.Sleep(1500 * time.Millisecond) // backends report their counters at most every second
	after, err := readDB(ctx, m.pool)
	if err != nil {
		return DBStats{Err: err.Error()}
	}
	s := DBStats{Source: "pg_stat_database", XactCommit: after.commits - m.before.commits,
		TupReturned: after.returned - m.before.returned, TupFetched: after.fetched - m.before.fetched}
	if after.hasStatements && m.before.hasStatements {
		s.Source = "pg_stat_statements"
		s.Statements = after.statements - m.before.statements
	}
	return s
}
