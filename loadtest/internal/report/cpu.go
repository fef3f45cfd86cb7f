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

// ReadCPU scrapes process_cpu_seconds_total from every url (name → URL).
// A URL that does not answer is left out and named in the error text.
func ReadCPU(ctx context.Context, urls map[string]string) (CPUReading, map[string]string) {
	out := CPUReading{}
	errs := map[string]string{}
	client := &http.Client{Timeout: 3 * time.Second}
	for name, u := range urls {
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
