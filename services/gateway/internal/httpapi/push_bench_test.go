package httpapi_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/finsvc/finance/pkg/ledger"
	"github.com/finsvc/finance/pkg/testkit"
)

// cpuSeconds is the CPU time this process used so far.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// rssBytes is this process's resident set size.
func rssBytes() float64 {
	b, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb * 1024
		}
	}
	return 0
}

// benchRequests runs b.N requests through the gateway over TCP, 8 at a
// time, and reports the process's CPU per request (gateway, client and the
// test's PostgreSQL client side; PostgreSQL itself is another process).
func benchRequests(b *testing.B, g *gateway, path, tok string) {
	b.Helper()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	do := func() {
		r, _ := http.NewRequest(http.MethodGet, g.srv.URL+path, nil)
		r.Header.Set("Authorization", "Bearer "+tok)
		resp, err := client.Do(r)
		if err != nil {
			b.Error(err)
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Errorf("status %d", resp.StatusCode)
		}
	}
	do()
	runtime.GC()
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	cpu0 := cpuSeconds()
	b.ResetTimer()
	var wg sync.WaitGroup
	next := make(chan struct{})
	for range 8 {
		wg.Go(func() {
			for range next {
				do()
			}
		})
	}
	for range b.N {
		next <- struct{}{}
	}
	close(next)
	wg.Wait()
	b.StopTimer()
	runtime.ReadMemStats(&ms1)
	b.ReportMetric((cpuSeconds()-cpu0)*1e6/float64(b.N), "cpu-µs/req")
	b.ReportMetric(float64(ms1.TotalAlloc-ms0.TotalAlloc)/float64(b.N), "alloc-B/req")
}

// BenchmarkGetPayment is the as-is read: GET /v1/payments/{id}, as a
// polling client does it today.
func BenchmarkGetPayment(b *testing.B) {
	e := setupPushB(b)
	benchRequests(b, e.gw, "/v1/payments/"+e.paymentUID, e.tok)
}

// BenchmarkLongPoll is a long-poll that ends with its wait (1 ms): the
// watch, both reads and the answer. A wake-up by an event costs the same
// reads, with the event instead of the timer.
func BenchmarkLongPoll(b *testing.B) {
	e := setupPushB(b)
	benchRequests(b, e.gw, "/v1/payments/"+e.paymentUID+"?wait=1ms", e.tok)
}

// BenchmarkStreamEvent is one event delivered to an open SSE stream:
// routed by the hub, formatted and flushed, and parsed by the client.
func BenchmarkStreamEvent(b *testing.B) {
	e := setupPushB(b)
	s := openStream(b, e.gw, 3456, e.tok, nil)
	base := ledger.Event{PaymentID: e.paymentID, UserID: 3456, Status: "processing", MerchantID: 4593, Amount: -100}
	runtime.GC()
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	cpu0 := cpuSeconds()
	b.ResetTimer()
	var received atomic.Int64
	go func() {
		for i := range b.N {
			// Stay within the stream's buffer, as a live topic would.
			for int64(i)-received.Load() > 1000 {
				runtime.Gosched()
			}
			ev := base
			ev.UserSeq = int64(2 + i)
			ev.OccurredAt = time.Now()
			e.gw.hub.Publish(ev)
		}
	}()
	for range b.N {
		if _, ok := s.next(); !ok {
			b.Fatal("stream ended")
		}
		received.Add(1)
	}
	b.StopTimer()
	runtime.ReadMemStats(&ms1)
	b.ReportMetric((cpuSeconds()-cpu0)*1e6/float64(b.N), "cpu-µs/event")
	b.ReportMetric(float64(ms1.TotalAlloc-ms0.TotalAlloc)/float64(b.N), "alloc-B/event")
}

type benchEnv struct {
	*pushEnv
	tok        string
	paymentID  int64
	paymentUID string
}

func setupPushB(b *testing.B) *benchEnv {
	b.Helper()
	e := setupPush(b, pushOpts{buffer: 4096})
	e.wallet(3456, 1_000_000)
	tok := token(b, 3456, false)
	p := e.payN(tok, 3456, 1, "bench-")[0]
	return &benchEnv{pushEnv: e, tok: tok, paymentID: p.ID, paymentUID: p.UID}
}

// TestPushSoak opens PUSH_SOAK long-polls and streams (half each) against
// one gateway, from a child process (so that the client's sockets and
// memory are not counted), and reports the gateway's heap and RSS per open
// connection. It is a measurement, run by hand (docs/push.md):
//
//	PUSH_SOAK=10000 go test ./services/gateway/internal/httpapi -run TestPushSoak -v -timeout 10m
func TestPushSoak(t *testing.T) {
	if addr := os.Getenv("PUSH_SOAK_CLIENT"); addr != "" {
		soakClient(t, addr)
		return
	}
	n, _ := strconv.Atoi(os.Getenv("PUSH_SOAK"))
	if n <= 0 {
		t.Skip("a measurement: set PUSH_SOAK=10000 to run it")
	}
	e := setupPush(t, pushOpts{waitMax: time.Hour, maxOpen: n + 10})
	users := n / 2
	e.exec(`INSERT INTO wallets (user_id, balance) SELECT u, 1000 FROM generate_series(1, $1) u`, users)
	e.exec(`INSERT INTO payments (user_id, merchant_id, amount, status, idempotency_key, request_hash)
		SELECT u, 4593, -100, 'accepted', 'soak-' || u, '' FROM generate_series(1, $1) u`, users)
	tok := token(t, 1, true)

	runtime.GC()
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	rss0, g0 := rssBytes(), runtime.NumGoroutine()

	cmd := exec.Command(os.Args[0], "-test.run=^TestPushSoak$", "-test.timeout=0")
	cmd.Env = append(os.Environ(), "PUSH_SOAK_CLIENT="+e.gw.srv.Listener.Addr().String(),
		"PUSH_SOAK_N="+strconv.Itoa(n), "PUSH_SOAK_TOKEN="+tok)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	testkit.EventuallyWithin(t, 5*time.Minute, "every connection open", func() bool { return e.gw.hub.Open() >= int64(n) })
	time.Sleep(time.Second) // let the last handlers reach their select
	runtime.GC()
	runtime.ReadMemStats(&ms1)
	rss1, g1 := rssBytes(), runtime.NumGoroutine()
	heap := float64(ms1.HeapInuse) - float64(ms0.HeapInuse)
	stacks := float64(ms1.StackInuse) - float64(ms0.StackInuse)
	fmt.Printf("push soak: %d open (%d long-polls, %d streams), %d goroutines more\n", n, n-users, users, g1-g0)
	fmt.Printf("  heap in use: %.1f MiB more, %.0f B per connection\n", heap/(1<<20), heap/float64(n))
	fmt.Printf("  stacks:      %.1f MiB more, %.0f B per connection\n", stacks/(1<<20), stacks/float64(n))
	fmt.Printf("  RSS:         %.1f MiB -> %.1f MiB, %.0f B per connection\n", rss0/(1<<20), rss1/(1<<20), (rss1-rss0)/float64(n))
}

// soakClient opens the connections and holds them until killed.
func soakClient(t *testing.T, addr string) {
	n, _ := strconv.Atoi(os.Getenv("PUSH_SOAK_N"))
	tok := os.Getenv("PUSH_SOAK_TOKEN")
	users := n / 2
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 0, DisableKeepAlives: true}}
	sem := make(chan struct{}, 64) // open them 64 at a time
	for i := range n {
		sem <- struct{}{}
		u := i%users + 1
		path := fmt.Sprintf("/v1/users/%d/events", u)
		if i >= users {
			path = fmt.Sprintf("/v1/payments/%d?wait=1h", 100000+u-1)
		}
		go func() {
			r, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, "http://"+addr+path, nil)
			r.Header.Set("Authorization", "Bearer "+tok)
			if i >= users { // a long-poll answers nothing until it ends
				go func() { time.Sleep(200 * time.Millisecond); <-sem }()
				resp, err := client.Do(r)
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				return
			}
			resp, err := client.Do(r)
			<-sem
			if err != nil {
				fmt.Fprintln(os.Stderr, "soak client:", err)
				return
			}
			_, _ = io.Copy(io.Discard, bufio.NewReader(resp.Body))
		}()
	}
	select {}
}
