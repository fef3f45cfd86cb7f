// Package procstat reads the CPU time of processes on this (Linux) machine
// from /proc/<pid>/stat. The load generator reports with it what local
// processes such as PostgreSQL used during a run, and the dispatcher
// benchmark what the PostgreSQL backends serving the dispatchers used.
package procstat

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Dir is where Linux shows its processes.
const Dir = "/proc"

// clockTicks is Linux's USER_HZ, the unit of /proc/<pid>/stat's times: 100
// on every architecture Go supports on Linux.
const clockTicks = 100

// ParseStat reads the command name and the CPU seconds (user and system)
// from the text of one /proc/<pid>/stat. When the times are unreadable it
// still returns the command name, with the error.
func ParseStat(b []byte) (comm string, seconds float64, err error) {
	// pid (comm) state ppid ...: comm may hold spaces and parentheses, so
	// it ends at the last ')'.
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return "", 0, errors.New("no command name")
	}
	// After comm: state(0) ppid pgrp session tty_nr tpgid flags minflt
	// cminflt majflt cmajflt utime(11) stime(12).
	comm = string(b[open+1 : end])
	fields := strings.Fields(string(b[end+1:]))
	if len(fields) < 13 {
		return comm, 0, fmt.Errorf("%d fields after the command name, want 13 or more", len(fields))
	}
	var ticks int64
	for _, f := range fields[11:13] {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return comm, 0, fmt.Errorf("bad CPU time %q", f)
		}
		ticks += n
	}
	return comm, float64(ticks) / clockTicks, nil
}

// PID returns the CPU seconds (user and system) of process pid under dir
// (Dir). A process that does not exist, or no longer does, is an error
// that wraps os.ErrNotExist.
func PID(dir string, pid int) (float64, error) {
	path := filepath.Join(dir, strconv.Itoa(pid), "stat")
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	_, sec, err := ParseStat(b)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return sec, nil
}

// ByName returns the CPU seconds (user and system) of every process under
// dir (Dir) whose command name is comm, by pid; an error when there is none.
func ByName(dir, comm string) (map[int]float64, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", dir, err)
	}
	out := map[int]float64{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name(), "stat"))
		if err != nil {
			continue // exited meanwhile
		}
		name, sec, err := ParseStat(b)
		if name != comm {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", e.Name(), err)
		}
		out[pid] = sec
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no process named %q on this machine", comm)
	}
	return out, nil
}

// Used is the CPU the processes of two readings used in between: for one
// in both, the difference; for one that started in between, all of its
// time. One that exited in between is missed, so for a server whose
// connections come and go this is a lower bound.
func Used[K comparable](before, after map[K]float64) float64 {
	var sec float64
	for pid, a := range after {
		sec += a - before[pid]
	}
	return sec
}

// PIDs returns the CPU seconds (user and system) of each of pids under dir
// (Dir) that exists, by pid: what Used compares. A benchmark reads its own
// process and its database connections' backends with it.
func PIDs(dir string, pids ...int) map[int]float64 {
	out := make(map[int]float64, len(pids))
	for _, pid := range pids {
		if sec, err := PID(dir, pid); err == nil {
			out[pid] = sec
		}
	}
	return out
}
