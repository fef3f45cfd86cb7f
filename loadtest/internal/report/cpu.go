package report

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ProcessCPU is the CPU time one process of the system under test used
// during a run, from its Prometheus process_cpu_seconds_total.
type ProcessCPU struct {
	Name    string  `json:"name"`
	URL     string  `json:"url"`
	Seconds float64 `json:"cpu_seconds"`
	Err     string  `json:"err,omitempty"`
}

// ProcPrefix marks a "URL" that is no URL: ProcPrefix + "postgres" reads
// the CPU of the processes named postgres on this machine from /proc.
const ProcPrefix = "proc:"

// CPUReading is, at one time, process_cpu_seconds_total of each metrics
// URL by name, and the CPU seconds of each local process by name and pid
// (key name + procSep + pid).
type CPUReading map[string]float64

const procSep = "\x00"

// ReadCPU scrapes process_cpu_seconds_total from every url (name → URL),
// or reads /proc for a ProcPrefix one. A URL that does not answer is left
// out and named in the error text.
func ReadCPU(ctx context.Context, urls map[string]string) (CPUReading, map[string]string) {
	out := CPUReading{}
	errs := map[string]string{}
	client := &http.Client{Timeout: 3 * time.Second}
	for name, u := range urls {
		if comm, ok := strings.CutPrefix(u, ProcPrefix); ok {
			byPid, err := procCPU("/proc", comm)
			if err != nil {
				errs[name] = err.Error()
				continue
			}
			for pid, sec := range byPid {
				out[name+procSep+pid] = sec
			}
			continue
		}
		v, err := scrapeCPU(ctx, client, u)
		if err != nil {
			errs[name] = err.Error()
			continue
		}
		out[name] = v
	}
	return out, errs
}

func scrapeCPU(ctx context.Context, client *http.Client, u string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%s answered %d", u, resp.StatusCode)
	}
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 8<<20))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "process_cpu_seconds_total "); ok {
			return strconv.ParseFloat(strings.TrimSpace(rest), 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("%s has no process_cpu_seconds_total", u)
}

// clockTicks is Linux's USER_HZ, the unit of /proc/<pid>/stat's times: 100
// on every architecture Go supports on Linux.
const clockTicks = 100

// procCPU returns the CPU seconds (user and system) of every process under
// procDir whose command name is comm, by pid.
func procCPU(procDir, comm string) (map[string]float64, error) {
	entries, err := os.ReadDir(procDir)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", procDir, err)
	}
	out := map[string]float64{}
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(procDir, e.Name(), "stat"))
		if err != nil {
			continue // exited meanwhile
		}
		// pid (comm) state ppid ...: comm may hold spaces and parentheses,
		// so it ends at the last ')'.
		open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
		if open < 0 || end < open || string(b[open+1:end]) != comm {
			continue
		}
		// After comm: state(0) ppid pgrp session tty_nr tpgid flags minflt
		// cminflt majflt cmajflt utime(11) stime(12).
		fields := strings.Fields(string(b[end+1:]))
		if len(fields) < 13 {
			continue
		}
		var ticks int64
		for _, f := range fields[11:13] {
			n, err := strconv.ParseInt(f, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("%s: bad CPU time %q", e.Name(), f)
			}
			ticks += n
		}
		out[e.Name()] = float64(ticks) / clockTicks
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no process named %q on this machine", comm)
	}
	return out, nil
}

// localUsed is the CPU the processes of name used between two readings:
// for a process in both, the difference; for one started in between, all
// of its time. A process that exited in between is left out, so for a
// server whose connections come and go this is a lower bound.
func localUsed(name string, before, after CPUReading) (float64, bool) {
	prefix := name + procSep
	var sec float64
	found := false
	for k, a := range after {
		if !strings.HasPrefix(k, prefix) {
			continue
		}
		found = true
		sec += a - before[k] // 0 when it started in between
	}
	return sec, found
}

// CPUUsed is the CPU each process used between two readings.
func CPUUsed(urls map[string]string, before, after CPUReading, errs map[string]string) []ProcessCPU {
	var out []ProcessCPU
	for _, name := range sortedKeys(toCounts(urls)) {
		p := ProcessCPU{Name: name, URL: urls[name]}
		b, okb := before[name]
		a, oka := after[name]
		if strings.HasPrefix(urls[name], ProcPrefix) {
			a, oka = localUsed(name, before, after)
			b, okb = 0, oka && errs[name] == ""
		}
		switch {
		case okb && oka:
			p.Seconds = float64(int((a-b)*100+0.5)) / 100
		case errs[name] != "":
			p.Err = errs[name]
		default:
			p.Err = "no reading"
		}
		out = append(out, p)
	}
	return out
}
