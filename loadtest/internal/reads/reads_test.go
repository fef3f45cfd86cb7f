package reads_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/finsvc/finance/loadtest/internal/reads"
	"github.com/finsvc/finance/loadtest/internal/report"
	"github.com/finsvc/finance/loadtest/internal/target"
	"github.com/finsvc/finance/pkg/auth"
	"github.com/finsvc/finance/pkg/simclient"
)

// fakeGateway serves the read routes over real HTTP: feeds, balances,
// long-polls that answer at the end of their wait or on shutdown, and
// streams that carry what publish sends to a user.
type fakeGateway struct {
	srv                     *httptest.Server
	feeds, balances, legacy atomic.Int64
	users                   sync.Map // user ids read
	openPolls, openStreams  atomic.Int64
	mu                      sync.Mutex
	streams                 map[int64][]chan string
	closing                 chan struct{}
}

func newFakeGateway(t *testing.T) *fakeGateway {
	g := &fakeGateway{streams: map[int64][]chan string{}, closing: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/users/{id}/feed", func(w http.ResponseWriter, r *http.Request) {
		g.feeds.Add(1)
		g.read(r.PathValue("id"))
		fmt.Fprint(w, `{"balance":1}`)
	})
	mux.HandleFunc("GET /v1/users/{id}/balance", func(w http.ResponseWriter, r *http.Request) {
		g.balances.Add(1)
		g.read(r.PathValue("id"))
		fmt.Fprint(w, `{"balance":1}`)
	})
	mux.HandleFunc("GET /payment_feed", func(w http.ResponseWriter, r *http.Request) {
		g.legacy.Add(1)
		g.read(r.URL.Query().Get("user_id"))
		fmt.Fprint(w, `{"balance":1}`)
	})
	mux.HandleFunc("GET /v1/payments/{id}", func(w http.ResponseWriter, r *http.Request) {
		g.openPolls.Add(1)
		defer g.openPolls.Add(-1)
		select {
		case <-r.Context().Done():
		case <-g.closing:
		}
		fmt.Fprint(w, `{"status":"succeeded"}`)
	})
	mux.HandleFunc("GET /v1/users/{id}/events", func(w http.ResponseWriter, r *http.Request) {
		user, _ := strconv.ParseInt(r.PathValue("id"), 10, 64)
		ch := make(chan string, 100)
		g.mu.Lock()
		g.streams[user] = append(g.streams[user], ch)
		g.mu.Unlock()
		g.openStreams.Add(1)
		defer g.openStreams.Add(-1)
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		for {
			select {
			case <-r.Context().Done():
				return
			case <-g.closing:
				return
			case ev := <-ch:
				fmt.Fprint(w, ev)
				w.(http.Flusher).Flush()
			}
		}
	})
	g.srv = httptest.NewServer(mux)
	t.Cleanup(func() { close(g.closing); g.srv.Close() })
	return g
}

func (g *fakeGateway) read(id string) {
	n, _ := strconv.ParseInt(id, 10, 64)
	g.users.Store(n, true)
}

func (g *fakeGateway) publish(user int64, ev string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, ch := range g.streams[user] {
		ch <- ev
	}
}

func config(g *fakeGateway, scenario string) reads.Config {
	c := reads.Defaults(scenario)
	c.Kind, c.URL, c.Secret, c.FirstUser, c.Population = target.Pipeline, g.srv.URL, []byte("secret"), 1000, 500
	c.Duration, c.Timeout = time.Second, 5*time.Second
	return c
}

// TestReadUsers: every virtual user reads once per think time, from the
// whole population, feeds and balances both, while the long-polls and the
// streams stay open until the end.
func TestReadUsers(t *testing.T) {
	t.Parallel()
	g := newFakeGateway(t)
	c := config(g, reads.ReadUsers)
	c.VUs, c.Think, c.LongPolls, c.Streams = 50, 250*time.Millisecond, 4, 6
	c.Waits = []reads.PaymentRef{{ID: 7, UserID: 1000}, {ID: 8, UserID: 1001}}
	res, err := reads.Run(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	// 50 users × 1 s / 250 ms = 200 reads, each VU's last one due before the end.
	if got := g.feeds.Load() + g.balances.Load(); got != 200 || res.OK != 200 || res.Reads.Count != 200 {
		t.Errorf("reads: served %d, ok %d, recorded %d; want 200", got, res.OK, res.Reads.Count)
	}
	if g.feeds.Load() == 0 || g.balances.Load() == 0 || res.Feeds.Count+res.Balances.Count != 200 {
		t.Errorf("feeds %d, balances %d: want both (balance ratio 0.5)", g.feeds.Load(), g.balances.Load())
	}
	users := 0
	g.users.Range(func(k, _ any) bool {
		if u := k.(int64); u < 1000 || u >= 1500 {
			t.Errorf("user %d read, outside the population 1000..1499", u)
		}
		users++
		return true
	})
	if users < 100 {
		t.Errorf("only %d distinct users read out of 200 reads over 500 users: not picked at random", users)
	}
	if res.LongPollsOpenAtEnd != 4 || res.StreamsOpenAtEnd != 6 || res.PushErrors != 0 {
		t.Errorf("push at the end: %d long-polls, %d streams, %d errors (%s); want 4, 6, 0",
			res.LongPollsOpenAtEnd, res.StreamsOpenAtEnd, res.PushErrors, res.PushFirstError)
	}
}

// TestReadMaxLegacy: closed model against the as-is route, feeds only.
func TestReadMaxLegacy(t *testing.T) {
	t.Parallel()
	g := newFakeGateway(t)
	c := config(g, reads.ReadMax)
	c.Kind, c.Conns, c.Duration = target.Legacy, 4, 300*time.Millisecond
	res, err := reads.Run(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	if g.legacy.Load() == 0 || g.feeds.Load()+g.balances.Load() != 0 || res.OK != g.legacy.Load() || res.Balances.Count != 0 {
		t.Errorf("legacy reads %d, pipeline reads %d, ok %d, balances %d: want only as-is feeds, all counted",
			g.legacy.Load(), g.feeds.Load()+g.balances.Load(), res.OK, res.Balances.Count)
	}
	if res.PerSecond <= 0 {
		t.Errorf("reads/s %v", res.PerSecond)
	}
}

// TestReadMaxOwnConnections: read-max's connections speak HTTP/1.1
// themselves (rawconn.go): each read carries its user's token, a
// connection the server closes is dialled again, and answers other than
// 2xx are counted by status.
func TestReadMaxOwnConnections(t *testing.T) {
	t.Parallel()
	secret := []byte("read-max-test-secret-of-32-bytes-at-least")
	var served, badTokens, conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := served.Add(1)
		if _, err := auth.NewVerifier(secret).FromHeader(r.Header.Get("Authorization")); err != nil {
			badTokens.Add(1)
		}
		switch n % 3 {
		case 0:
			w.Header().Set("Connection", "close")
		case 1:
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		fmt.Fprint(w, `{"balance":1}`)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	c := reads.Defaults(reads.ReadMax)
	c.Kind, c.URL, c.Secret, c.FirstUser, c.Population = target.Pipeline, srv.URL, secret, 1000, 500
	c.Conns, c.Duration, c.Timeout = 2, 300*time.Millisecond, 5*time.Second
	res, err := reads.Run(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	if served.Load() < 30 || badTokens.Load() != 0 {
		t.Fatalf("%d reads, %d without a valid token: want many, none", served.Load(), badTokens.Load())
	}
	if got := res.OK + res.Errors["503"]; got != served.Load() || res.Errors["503"] == 0 || len(res.Errors) != 1 {
		t.Errorf("ok %d and errors %v for %d reads served: want every read counted, the 503s by status", res.OK, res.Errors, served.Load())
	}
	if conns.Load() < served.Load()/3 {
		t.Errorf("%d connections for %d reads, a third of them closed by the server: closed connections not dialled again",
			conns.Load(), served.Load())
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	c := reads.Defaults(reads.ReadUsers)
	c.Kind = target.Legacy
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "no long-poll or SSE") {
		t.Errorf("legacy with streams: %v", err)
	}
	c.LongPolls, c.Streams, c.VUs, c.Population = 0, 0, 0, 0
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "--users 0") || !strings.Contains(err.Error(), "--population 0") {
		t.Errorf("every problem at once: %v", err)
	}
}

// TestSSELatency: the credits' succeeded events, matched with the
// executions by key, give answer → event.
func TestSSELatency(t *testing.T) {
	t.Parallel()
	g := newFakeGateway(t)
	c := config(g, reads.SSELatency)
	c.Streams, c.Population, c.Duration = 3, 3, 500*time.Millisecond
	var mu sync.Mutex
	var execs []simclient.Execution
	pay := func(_ context.Context, _ string, p target.Payment) target.Response {
		uid := uuid.Must(uuid.NewV7()).String()
		go func() {
			mu.Lock()
			execs = append(execs, simclient.Execution{IdempotencyKey: "payment-" + uid, UserID: p.UserID, ExecutedAt: time.Now()})
			mu.Unlock()
			time.Sleep(10 * time.Millisecond)
			b, _ := json.Marshal(map[string]string{"uid": uid, "status": "succeeded"})
			g.publish(p.UserID, "id: 1\nevent: payment.succeeded\ndata: "+string(b)+"\n\n")
		}()
		return target.Response{Class: target.OK, PaymentUID: uid}
	}
	res, sse, err := reads.RunSSE(context.Background(), c, reads.SSEConfig{Rate: 20, RunID: "t", Pay: pay, Grace: 5 * time.Second,
		Executions: func(context.Context) ([]simclient.Execution, error) {
			mu.Lock()
			defer mu.Unlock()
			return append([]simclient.Execution(nil), execs...), nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	if sse.Sent != 10 || sse.Accepted != 10 || sse.Executed != 10 || sse.Matched != 10 || sse.Missing != 0 {
		t.Fatalf("sse %+v: want 10 sent, accepted, executed and matched", sse)
	}
	if sse.AnswerSSE.P50 < 10 || sse.AnswerSSE.Max > 5000 {
		t.Errorf("answer→event %+v: want at least the 10 ms the fake waits", sse.AnswerSSE)
	}
	if res.SSEEvents != 10 {
		t.Errorf("events %d, want 10", res.SSEEvents)
	}
}

func TestParseStatus(t *testing.T) {
	t.Parallel()
	rss, hwm, err := reads.ParseStatus([]byte("Name:\tgateway\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\nThreads: 9\n"))
	if err != nil || rss != 100<<20 || hwm != 200<<20 {
		t.Errorf("got %d %d %v", rss, hwm, err)
	}
	if _, _, err := reads.ParseStatus([]byte("Name:\tkthreadd\n")); err == nil {
		t.Error("a status without VmRSS: want an error")
	}
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip("no /proc here")
	}
	if rss, _, err := reads.ParseStatus(b); err != nil || rss <= 0 {
		t.Errorf("this process: %d %v", rss, err)
	}
	s := reads.SampleRSS("/proc", os.Getpid()).Stop()
	if s.Err != "" || s.PeakSampled <= 0 || s.HWM < s.PeakSampled {
		t.Errorf("sampled %+v", s)
	}
}

func TestJudge(t *testing.T) {
	t.Parallel()
	mk := func(tgt string, pop int, perSec, p99, cpuSec float64) *reads.Report {
		name := map[string]string{"pipeline": "gateway", "legacy": "legacy"}[tgt]
		r := &reads.Report{Scenario: reads.ReadMax, Target: tgt, Settings: reads.Settings{Population: pop, Conns: 64},
			Result: &reads.Result{OK: 1000, PerSecond: perSec, Reads: reads.Latency{Count: 1000, P99: p99}},
			CPU:    nil}
		r.CPU = append(r.CPU, reportCPU(name, cpuSec))
		r.Judge(nil)
		return r
	}
	legacy := mk("legacy", 100_000, 1000, 40, 0.5)
	gw := mk("pipeline", 100_000, 3500, 30, 0.4)
	gw.Judge(legacy)
	want := map[string]bool{"read p99": true, "read throughput vs legacy": true, "target CPU per read vs legacy": true}
	for _, g := range gw.Goals {
		if m, ok := want[g.Name]; !ok || m != g.Met {
			t.Errorf("goal %+v: want met=%v (known %v)", g, m, ok)
		}
		delete(want, g.Name)
	}
	if len(want) != 0 {
		t.Errorf("goals missing: %v", want)
	}
	slow := mk("pipeline", 100_000, 2000, 30, 0.6)
	slow.Judge(legacy)
	for _, g := range slow.Goals {
		if g.Name != "read p99" && g.Met {
			t.Errorf("goal %+v met at 2× the throughput and more CPU", g)
		}
	}
	big := mk("pipeline", 1_000_000, 3500, 45, 0.4)
	big.Judge(gw)
	if g := big.Goals[len(big.Goals)-1]; !strings.HasPrefix(g.Name, "p99 at 1000000 vs 100000") || g.Met {
		t.Errorf("p99 45 vs 30 ms (50%%): %+v, want not met", g)
	}
}

func reportCPU(name string, sec float64) report.ProcessCPU {
	return report.ProcessCPU{Name: name, Seconds: sec}
}

// A read run's summary says what the hypervisor took, when it was measured.
func TestSummarySaysSteal(t *testing.T) {
	t.Parallel()
	r := &reads.Report{Scenario: reads.ReadMax, Target: "pipeline", Result: &reads.Result{}}
	if s := r.Summary(); strings.Contains(s, "hypervisor") {
		t.Errorf("a run that did not measure steal speaks of it:\n%s", s)
	}
	steal := 0.125
	r.MachineSteal = &steal
	if s := r.Summary(); !strings.Contains(s, "The hypervisor gave 12.5% of the machine's CPU time to other guests during the run (steal):") {
		t.Errorf("steal not said:\n%s", s)
	}
}
