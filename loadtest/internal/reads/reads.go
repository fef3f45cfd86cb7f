// Package reads runs the read benchmarks of issue 14 (point 5): read-users,
// many virtual users reading feeds and balances with think time while
// long-polls and server-sent-event streams are held open, and read-max, a
// closed-model run of C connections with no think time for the most reads
// a second the target serves. Both pick their users at random from a large
// seeded population, so that the dataset's size shows in the latency.
//
// Reads write nothing, so there is no money to check: a run reports
// latency, throughput, the target's CPU and peak RSS, and the database's
// work per request, against the goals of the issue.
package reads

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/finsvc/finance/loadtest/internal/target"
	"github.com/finsvc/finance/pkg/auth"
)

// The read scenarios.
const (
	ReadUsers  = "read-users"
	ReadMax    = "read-max"
	SSELatency = "sse-latency"
)

// Scenarios describes the read scenarios for `loadtest scenarios`.
func Scenarios() map[string]string {
	return map[string]string{
		ReadUsers: "10,000 virtual users over 1,000,000 seeded users reading feeds and balances with 10 s think time " +
			"(open model per user), plus 2,000 long-polls and 2,000 SSE streams held open, 60 s",
		ReadMax: "closed model: 64 connections reading feeds and balances of 1,000,000 seeded users " +
			"with no think time, 30 s: the most reads a second, at its p99",
		SSELatency: "200 SSE streams while their users receive credits at 50/s for 30 s: processor's answer → " +
			"client's SSE event (pipeline only)",
	}
}

// IsScenario reports whether name is a read scenario.
func IsScenario(name string) bool {
	_, ok := Scenarios()[name]
	return ok
}

// Config is one read run.
type Config struct {
	Scenario string
	Kind     target.Kind
	URL      string
	// Population is how many seeded users the requests pick from, ids
	// FirstUser..FirstUser+Population-1.
	Population int
	FirstUser  int64
	// VUs are read-users' virtual users, each reading once every Think
	// (open model per user: its request k is due at phase + k × Think,
	// and its latency counts from then).
	VUs   int
	Think time.Duration
	// Conns are read-max's connections, each sending its next read as
	// soon as the last one answered.
	Conns    int
	Duration time.Duration
	// BalanceRatio is the share of reads that are balances (pipeline; the
	// as-is service has no balance route, so it reads only feeds).
	BalanceRatio float64
	// LongPolls and Streams are held open during the run (pipeline).
	LongPolls int
	Streams   int
	// Waits are the payments the long-polls wait on.
	Waits   []PaymentRef
	Secret  []byte
	Timeout time.Duration
	// Seed makes the users' choice reproducible.
	Seed uint64
	// Progress, if set, is called about once a second.
	Progress func(elapsed time.Duration, reads int64, p99 float64)
}

// PaymentRef is a payment and its owner.
type PaymentRef struct {
	ID     int64
	UserID int64
}

// Defaults returns the defaults of scenario name.
func Defaults(name string) Config {
	c := Config{Scenario: name, Population: 1_000_000, Duration: 60 * time.Second, BalanceRatio: 0.5,
		Timeout: 30 * time.Second, Seed: 1}
	switch name {
	case ReadUsers:
		c.VUs, c.Think, c.LongPolls, c.Streams = 10_000, 10*time.Second, 2_000, 2_000
	case ReadMax:
		c.Conns, c.Duration = 64, 30*time.Second
	case SSELatency:
		c.Population, c.Streams, c.Duration = 200, 200, 30*time.Second
	}
	return c
}

// Validate reports every problem of c at once.
func (c Config) Validate() error {
	var errs []error
	if !IsScenario(c.Scenario) {
		errs = append(errs, fmt.Errorf("unknown read scenario %q", c.Scenario))
	}
	if c.Population < 1 {
		errs = append(errs, fmt.Errorf("--population %d: want at least 1", c.Population))
	}
	if c.Duration <= 0 {
		errs = append(errs, fmt.Errorf("--duration %s: want more than 0", c.Duration))
	}
	if c.BalanceRatio < 0 || c.BalanceRatio > 1 {
		errs = append(errs, fmt.Errorf("--balance-ratio %v: want 0..1", c.BalanceRatio))
	}
	if c.LongPolls < 0 || c.Streams < 0 {
		errs = append(errs, errors.New("--long-polls and --streams: want 0 or more"))
	}
	switch c.Scenario {
	case ReadUsers:
		if c.VUs < 1 {
			errs = append(errs, fmt.Errorf("--users %d: want at least 1", c.VUs))
		}
		if c.Think <= 0 {
			errs = append(errs, fmt.Errorf("--think %s: want more than 0", c.Think))
		}
	case ReadMax:
		if c.Conns < 1 {
			errs = append(errs, fmt.Errorf("--conns %d: want at least 1", c.Conns))
		}
		if err := plainHTTPHost(c.URL); err != nil {
			errs = append(errs, fmt.Errorf("--url: %w", err))
		}
	case SSELatency:
		if c.Streams < 1 {
			errs = append(errs, fmt.Errorf("--streams %d: want at least 1", c.Streams))
		}
	}
	if c.Kind == target.Legacy && (c.LongPolls > 0 || c.Streams > 0 || c.Scenario == SSELatency) {
		errs = append(errs, errors.New("the as-is service has no long-poll or SSE route: use --long-polls 0 --streams 0 "+
			"(and no sse-latency) with --target legacy"))
	}
	return errors.Join(errs...)
}

// Latency is a distribution in milliseconds.
type Latency struct {
	Count int64   `json:"count"`
	P50   float64 `json:"p50_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p999_ms"`
	Max   float64 `json:"max_ms"`
}

// Result is what a run measured on the client's side.
type Result struct {
	StartedAt time.Time     `json:"started_at"`
	Elapsed   time.Duration `json:"elapsed"`
	// Reads are every read together; Feeds and Balances each kind.
	Reads    Latency `json:"reads"`
	Feeds    Latency `json:"feeds"`
	Balances Latency `json:"balances"`
	// OK counts 2xx reads; Errors the others by class or status.
	OK         int64            `json:"ok"`
	Errors     map[string]int64 `json:"errors,omitempty"`
	PerSecond  float64          `json:"reads_per_second"`
	SendLagP99 float64          `json:"send_lag_p99_ms,omitempty"`
	// Push: the long-polls and streams that were open at the end of the
	// load, the most at once, and how many answered or failed.
	LongPollsOpenAtEnd int64  `json:"long_polls_open_at_end"`
	StreamsOpenAtEnd   int64  `json:"streams_open_at_end"`
	LongPollAnswers    int64  `json:"long_poll_answers"`
	PushErrors         int64  `json:"push_errors"`
	PushFirstError     string `json:"push_first_error,omitempty"`
	SSEEvents          int64  `json:"sse_events"`
}

const (
	histMin = 1
	histMax = int64(10 * time.Minute / time.Microsecond)
)

// recorder collects latencies; safe for concurrent use.
type recorder struct {
	mu                   sync.Mutex
	all, feeds, balances *hdrhistogram.Histogram
	lag                  *hdrhistogram.Histogram
	ok                   int64
	errs                 map[string]int64
	n                    atomic.Int64
}

func newRecorder() *recorder {
	h := func() *hdrhistogram.Histogram { return hdrhistogram.New(histMin, histMax, 3) }
	return &recorder{all: h(), feeds: h(), balances: h(), lag: h(), errs: map[string]int64{}}
}

func (r *recorder) record(balance bool, latency, lag time.Duration, class string) {
	us := min(max(latency.Microseconds(), histMin), histMax)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.n.Add(1)
	if class != "" {
		r.errs[class]++
		return
	}
	r.ok++
	_ = r.all.RecordValue(us)
	if balance {
		_ = r.balances.RecordValue(us)
	} else {
		_ = r.feeds.RecordValue(us)
	}
	if lag > 0 {
		_ = r.lag.RecordValue(min(max(lag.Microseconds(), histMin), histMax))
	}
}

func (r *recorder) p99() float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return float64(r.all.ValueAtQuantile(99)) / 1000
}

func latencyOf(h *hdrhistogram.Histogram) Latency {
	if h.TotalCount() == 0 {
		return Latency{}
	}
	ms := func(us int64) float64 { return math.Round(float64(us)/10) / 100 }
	return Latency{Count: h.TotalCount(), P50: ms(h.ValueAtQuantile(50)), P99: ms(h.ValueAtQuantile(99)),
		P999: ms(h.ValueAtQuantile(99.9)), Max: ms(h.Max())}
}

// client is the generator's HTTP side: one transport for the reads, with
// at most maxConns connections, and one for the long-lived requests.
type client struct {
	cfg    Config
	base   string
	reads  *http.Client
	push   *http.Client
	tokens sync.Map // user id → token
}

func newClient(cfg Config, maxConns int) *client {
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	tr := &http.Transport{Proxy: nil, DialContext: dialer.DialContext, MaxIdleConns: maxConns,
		MaxIdleConnsPerHost: maxConns, MaxConnsPerHost: maxConns, IdleConnTimeout: 90 * time.Second, DisableCompression: true}
	ptr := &http.Transport{Proxy: nil, DialContext: dialer.DialContext, DisableCompression: true,
		MaxIdleConnsPerHost: cfg.LongPolls + cfg.Streams + 1}
	return &client{cfg: cfg, base: strings.TrimRight(cfg.URL, "/"),
		reads: &http.Client{Transport: tr, Timeout: cfg.Timeout}, push: &http.Client{Transport: ptr}}
}

func (c *client) close() {
	c.reads.CloseIdleConnections()
	c.push.CloseIdleConnections()
}

// token returns user's token, minted once.
func (c *client) token(user int64) (string, error) {
	if t, ok := c.tokens.Load(user); ok {
		return t.(string), nil
	}
	t, err := auth.Mint(c.cfg.Secret, user, false, c.cfg.Duration+c.cfg.Timeout+time.Hour, time.Now())
	if err != nil {
		return "", err
	}
	c.tokens.Store(user, t)
	return t, nil
}

// path is the route of a read of user.
func (c *client) path(user int64, balance bool) string {
	u := strconv.FormatInt(user, 10)
	switch {
	case c.cfg.Kind == target.Legacy:
		return "/payment_feed?user_id=" + u
	case balance:
		return "/v1/users/" + u + "/balance"
	default:
		return "/v1/users/" + u + "/feed"
	}
}

// read sends one read and returns "" or the class of its failure.
func (c *client) read(ctx context.Context, user int64, balance bool) string {
	tok, err := c.token(user)
	if err != nil {
		return "token"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+c.path(user, balance), nil)
	if err != nil {
		return "net_error"
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := c.reads.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "Timeout") {
			return "timeout"
		}
		return "net_error"
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return strconv.Itoa(resp.StatusCode)
	}
	return ""
}

// picker chooses users and read kinds, one per goroutine.
type picker struct {
	rnd *rand.Rand
	cfg Config
}

func newPicker(cfg Config, stream uint64) *picker {
	return &picker{rnd: rand.New(rand.NewPCG(cfg.Seed, stream)), cfg: cfg}
}

func (p *picker) next() (user int64, balance bool) {
	user = p.cfg.FirstUser + p.rnd.Int64N(int64(p.cfg.Population))
	balance = p.cfg.Kind == target.Pipeline && p.rnd.Float64() < p.cfg.BalanceRatio
	return user, balance
}

// Run runs cfg's read-users or read-max load and returns what the clients saw.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	maxConns := cfg.Conns
	if cfg.Scenario == ReadUsers {
		maxConns = cfg.VUs
	}
	c := newClient(cfg, maxConns)
	defer c.close()
	rec := newRecorder()
	pushCtx, stopPush := context.WithCancel(ctx)
	ps := &pushState{}
	var pushWG sync.WaitGroup
	ps.start(pushCtx, c, &pushWG)

	start := time.Now()
	end := start.Add(cfg.Duration)
	lctx, cancel := context.WithDeadline(ctx, end.Add(cfg.Timeout))
	defer cancel()
	var wg sync.WaitGroup
	switch cfg.Scenario {
	case ReadUsers:
		for v := range cfg.VUs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				vu(lctx, c, rec, newPicker(cfg, uint64(v)), start, end,
					time.Duration(float64(cfg.Think)*float64(v)/float64(cfg.VUs)))
			}()
		}
	case ReadMax:
		for w := range cfg.Conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				closedLoop(lctx, c, rec, newPicker(cfg, uint64(w)), end)
			}()
		}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
wait:
	for {
		select {
		case <-done:
			break wait
		case <-tick.C:
			if cfg.Progress != nil {
				cfg.Progress(time.Since(start), rec.n.Load(), rec.p99())
			}
		}
	}
	elapsed := time.Since(start)
	res := &Result{StartedAt: start, Elapsed: elapsed,
		LongPollsOpenAtEnd: ps.longPollsOpen.Load(), StreamsOpenAtEnd: ps.streamsOpen.Load()}
	stopPush()
	pushWG.Wait()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	res.Reads, res.Feeds, res.Balances = latencyOf(rec.all), latencyOf(rec.feeds), latencyOf(rec.balances)
	res.OK, res.Errors = rec.ok, rec.errs
	res.PerSecond = math.Round(float64(rec.ok)/min(elapsed, cfg.Duration).Seconds()*10) / 10
	res.SendLagP99 = latencyOf(rec.lag).P99
	res.LongPollAnswers, res.PushErrors, res.SSEEvents = ps.answers.Load(), ps.errors.Load(), ps.events.Load()
	if e, ok := ps.firstErr.Load().(string); ok {
		res.PushFirstError = e
	}
	return res, ctx.Err()
}

// vu is one virtual user of read-users: its read k is due at
// start + phase + k × think, whatever the earlier ones did (a late answer
// makes the next read late, and that lateness counts as latency: no
// coordinated omission).
func vu(ctx context.Context, c *client, rec *recorder, p *picker, start, end time.Time, phase time.Duration) {
	for k := 0; ; k++ {
		due := start.Add(phase + time.Duration(k)*c.cfg.Think)
		if !due.Before(end) {
			return
		}
		if d := time.Until(due); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		user, balance := p.next()
		sent := time.Now()
		class := c.read(ctx, user, balance)
		if ctx.Err() != nil && class != "" {
			return
		}
		rec.record(balance, time.Since(due), sent.Sub(due), class)
	}
}

// closedLoop is one connection of read-max: the next read as soon as the
// last one answered, until end.
func closedLoop(ctx context.Context, c *client, rec *recorder, p *picker, end time.Time) {
	conn := newRawConn(c)
	defer conn.close()
	for time.Now().Before(end) {
		user, balance := p.next()
		sent := time.Now()
		class := conn.read(ctx, user, balance)
		if ctx.Err() != nil && class != "" {
			return
		}
		rec.record(balance, time.Since(sent), 0, class)
	}
}

// pushState counts the long-lived requests.
type pushState struct {
	longPollsOpen, streamsOpen atomic.Int64
	answers, errors, events    atomic.Int64
	firstErr                   atomic.Value
}

func (ps *pushState) fail(err error) {
	ps.errors.Add(1)
	ps.firstErr.CompareAndSwap(nil, err.Error())
}

// start opens cfg's long-polls and streams, 64 at a time, each of them
// reopened when it ends, until ctx ends.
func (ps *pushState) start(ctx context.Context, c *client, wg *sync.WaitGroup) {
	sem := make(chan struct{}, 64)
	for i := range c.cfg.LongPolls {
		if len(c.cfg.Waits) == 0 {
			break
		}
		ref := c.cfg.Waits[i%len(c.cfg.Waits)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				sem <- struct{}{}
				ps.longPoll(ctx, c, ref, func() { <-sem })
			}
		}()
	}
	p := newPicker(c.cfg, math.MaxUint32)
	for range c.cfg.Streams {
		user, _ := p.next()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				sem <- struct{}{}
				ps.stream(ctx, c, user, func() { <-sem }, nil)
			}
		}()
	}
}

// longPoll waits on ref's payment for a minute; release is called once
// the request is sent.
func (ps *pushState) longPoll(ctx context.Context, c *client, ref PaymentRef, release func()) {
	tok, err := c.token(ref.UserID)
	if err != nil {
		release()
		ps.fail(err)
		return
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/v1/payments/"+strconv.FormatInt(ref.ID, 10)+"?wait=60s", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	// A long-poll answers nothing until it ends: count it open once sent.
	opened := time.AfterFunc(200*time.Millisecond, func() { ps.longPollsOpen.Add(1); release() })
	resp, err := c.push.Do(req)
	if opened.Stop() {
		release()
	} else {
		defer ps.longPollsOpen.Add(-1)
	}
	if err != nil {
		if ctx.Err() == nil {
			ps.fail(err)
			sleep(ctx, time.Second)
		}
		return
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		ps.fail(fmt.Errorf("long-poll: %d", resp.StatusCode))
		sleep(ctx, time.Second)
		return
	}
	ps.answers.Add(1)
}

// SSEEvent is one event a stream received.
type SSEEvent struct {
	ID      string
	Type    string
	Data    string
	Arrived time.Time
}

// stream holds user's event stream open, calling onEvent for each event.
func (ps *pushState) stream(ctx context.Context, c *client, user int64, release func(), onEvent func(SSEEvent)) {
	tok, err := c.token(user)
	if err != nil {
		release()
		ps.fail(err)
		return
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/v1/users/"+strconv.FormatInt(user, 10)+"/events", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := c.push.Do(req)
	release()
	if err != nil {
		if ctx.Err() == nil {
			ps.fail(err)
			sleep(ctx, time.Second)
		}
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		ps.fail(fmt.Errorf("stream: %d", resp.StatusCode))
		sleep(ctx, time.Second)
		return
	}
	ps.streamsOpen.Add(1)
	defer ps.streamsOpen.Add(-1)
	sc := bufio.NewScanner(resp.Body)
	var ev SSEEvent
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if ev.Type != "" || ev.Data != "" {
				ev.Arrived = time.Now()
				ps.events.Add(1)
				if onEvent != nil {
					onEvent(ev)
				}
			}
			ev = SSEEvent{}
		case strings.HasPrefix(line, "id: "):
			ev.ID = line[4:]
		case strings.HasPrefix(line, "event: "):
			ev.Type = line[7:]
		case strings.HasPrefix(line, "data: "):
			ev.Data = line[6:]
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
