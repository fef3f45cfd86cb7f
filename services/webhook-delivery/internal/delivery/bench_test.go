package delivery_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/finsvc/finance/pkg/ledger"
	"github.com/finsvc/finance/pkg/payment"
	"github.com/finsvc/finance/pkg/testkit"
	"github.com/finsvc/finance/pkg/webhook"
	"github.com/finsvc/finance/services/webhook-delivery/internal/delivery"
)

// BenchmarkDelivery sends a burst of events to 100 endpoints on fast local
// receivers, all healthy or with 10 of them dead (they hold every request
// until the attempt's timeout), and reports the healthy endpoints'
// deliveries per second, the process's CPU per delivery (service, broker
// and receivers: everything in this test binary; PostgreSQL's is apart),
// the heap in use after, and the p99 from the event's time to the
// receiver's answer. docs/webhooks.md has the numbers:
//
//	go test ./services/webhook-delivery/internal/delivery -run '^$' -bench Delivery -benchtime 1x
func BenchmarkDelivery(b *testing.B) {
	for _, dead := range []int{0, 10} {
		b.Run(fmt.Sprintf("dead=%d_of_100", dead), func(b *testing.B) {
			for range b.N {
				benchDelivery(b, dead)
			}
		})
	}
}

func benchDelivery(b *testing.B, dead int) {
	const endpoints, events, users = 100, 200, 50
	bd := setupB(b, func(c *delivery.Config) {
		c.Timeout = 15 * time.Second
		c.Lease = time.Minute
		c.MaxInFlight = 1024 // WEBHOOK_MAX_IN_FLIGHT's default (docs/webhooks.md, "Isolation: the global bound")
		c.EndpointConcurrency = 8
		c.Schedule = delivery.DefaultSchedule()
		c.BreakerFailures = 5
		c.BreakerOpen = 30 * time.Second
	})
	var got atomic.Int64
	var mu sync.Mutex
	var lat []time.Duration
	fast := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var p webhook.Payload
		_ = json.Unmarshal(body, &p)
		if at, err := time.Parse(time.RFC3339Nano, p.CreatedAt); err == nil {
			mu.Lock()
			lat = append(lat, time.Since(at))
			mu.Unlock()
		}
		got.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	b.Cleanup(fast.Close)
	hang := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	b.Cleanup(func() { close(hang); slow.Close() })
	for i := range endpoints {
		u := fast.URL
		if i < dead {
			u = slow.URL
		}
		bd.endpointB(b, fmt.Sprintf("%s/%d", u, i), 0)
	}
	var evs []ledger.Event
	for i := range int64(events) {
		evs = append(evs, event(10000+i, 1+i%users, 1+i/users, payment.StatusSucceeded))
	}
	want := int64((endpoints - dead) * events)
	var ru0 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	start := time.Now()
	bd.publishB(b, evs...)
	testkit.EventuallyWithin(b, 5*time.Minute, "every healthy delivery", func() bool {
		if time.Since(start) > 4*time.Minute {
			b.Logf("delivered %d of %d", got.Load(), want)
		}
		return got.Load() >= want
	})
	took := time.Since(start)
	var ru1 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	cpu := time.Duration(ru1.Utime.Nano()+ru1.Stime.Nano()-ru0.Utime.Nano()-ru0.Stime.Nano()) * time.Nanosecond
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	mu.Lock()
	slices.Sort(lat)
	p99 := lat[len(lat)*99/100]
	mu.Unlock()
	b.ReportMetric(float64(want)/took.Seconds(), "healthy_deliveries/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(got.Load()), "cpu_us/delivery")
	b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap_MiB")
	b.ReportMetric(float64(p99.Milliseconds()), "p99_event_to_2xx_ms")
}
