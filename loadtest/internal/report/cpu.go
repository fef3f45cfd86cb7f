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

// CPUReading is process_cpu_seconds_total of each metrics URL at one time.
type CPUReading map[string]float64

// ProcPrefix marks a "URL" that is no URL: ProcPrefix + "postgres" reads
// the CPU of the processes named postgres on this machine from /proc.
const ProcPrefix = "proc:"

// ReadCPU scrapes process_cpu_seconds_total from every url (name → URL),
// or sums /proc for a ProcPrefix one. A URL that does not answer is left
// out and named in the error text.
func ReadCPU(ctx context.Context, urls map[string]string) (CPUReading, map[string]string) {
	out := CPUReading{}
	errs := map[string]string{}
	client := &http.Client{Timeout: 3 * time.Second}
	for name, u := range urls {
		var v float64
		var err error
		if comm, ok := strings.CutPrefix(u, ProcPrefix); ok {
			v, err = procCPU("/proc", comm)
		} else {
			v, err = scrapeCPU(ctx, client, u)
		}
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

// procCPU sums the CPU seconds of every process under procDir whose command
// name is comm: its own user and system time plus that of its children
// that have exited and been waited for. A database's backends come and go;
// their time moves to the server's parent process when they exit, so the
// sum over the command name loses none of it, as long as the children have
// the same name (PostgreSQL's do).
func procCPU(procDir, comm string) (float64, error) {
	entries, err := os.ReadDir(procDir)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", procDir, err)
	}
	var ticks int64
	found := false
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
		fields := strings.Fields(string(b[end+1:]))
		// After comm: state(0) ppid pgrp session tty_nr tpgid flags minflt
		// cminflt majflt cmajflt utime(11) stime cutime cstime(14).
		if len(fields) < 15 {
			continue
		}
		for _, f := range fields[11:15] {
			n, err := strconv.ParseInt(f, 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%s: bad CPU time %q", e.Name(), f)
			}
			ticks += n
		}
		found = true
	}
	if !found {
		return 0, fmt.Errorf("no process named %q on this machine", comm)
	}
	return float64(ticks) / clockTicks, nil
}

// CPUUsed is the CPU each process used between two readings.
func CPUUsed(urls map[string]string, before, after CPUReading, errs map[string]string) []ProcessCPU {
	var out []ProcessCPU
	for _, name := range sortedKeys(toCounts(urls)) {
		p := ProcessCPU{Name: name, URL: urls[name]}
		b, okb := before[name]
		a, oka := after[name]
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
