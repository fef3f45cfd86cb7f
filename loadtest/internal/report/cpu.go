package report

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/finsvc/finance/pkg/procstat"
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
// the CPU of the processes named postgres on this machine from /proc
// (pkg/procstat).
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
			byPid, err := procstat.ByName(procstat.Dir, comm)
			if err != nil {
				errs[name] = err.Error()
				continue
			}
			for pid, sec := range byPid {
				out[name+procSep+strconv.Itoa(pid)] = sec
			}
			continue
		}
		v, err := ScrapeMetric(ctx, client, u, "process_cpu_seconds_total")
		if err != nil {
			errs[name] = err.Error()
			continue
		}
		out[name] = v
	}
	return out, errs
}

// ScrapeMetric reads the value of the metric name, a series without
// labels, from the Prometheus text at u.
func ScrapeMetric(ctx context.Context, client *http.Client, u, name string) (float64, error) {
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
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(rest), 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("%s has no %s", u, name)
}

// localUsed is the CPU the processes of name used between two readings
// (procstat.Used: a lower bound), and whether the later reading has any.
func localUsed(name string, before, after CPUReading) (float64, bool) {
	prefix := name + procSep
	b, a := map[string]float64{}, map[string]float64{}
	for k, sec := range before {
		if pid, ok := strings.CutPrefix(k, prefix); ok {
			b[pid] = sec
		}
	}
	for k, sec := range after {
		if pid, ok := strings.CutPrefix(k, prefix); ok {
			a[pid] = sec
		}
	}
	return procstat.Used(b, a), len(a) > 0
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
