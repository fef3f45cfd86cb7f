package report_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/finsvc/finance/loadtest/internal/report"
)

func TestCPUUsed(t *testing.T) {
	t.Parallel()
	var cpu atomic.Int64
	cpu.Store(150)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n"+
			"# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total %.2f\ngo_goroutines 7\n", float64(cpu.Load())/100)
	}))
	defer srv.Close()
	urls := map[string]string{"gateway": srv.URL, "gone": "http://127.0.0.1:1/metrics"}
	before, errs := report.ReadCPU(context.Background(), urls)
	cpu.Store(425)
	after, _ := report.ReadCPU(context.Background(), urls)
	got := report.CPUUsed(urls, before, after, errs)
	if len(got) != 2 || got[0].Name != "gateway" || got[1].Name != "gone" || got[1].Err == "" {
		t.Fatalf("CPUUsed = %+v", got)
	}
	if diff := cmp.Diff(report.ProcessCPU{Name: "gateway", URL: srv.URL, Seconds: 2.75}, got[0]); diff != "" {
		t.Errorf("gateway (-want +got):\n%s", diff)
	}
}
