package reads

// The hostile scenario (issue 16, point 3): a hostile client must not raise
// another user's p99 by more than 20%. Ordinary users (the victims) read
// their own feeds and balances and post an occasional small payment at a
// fixed rate from one address, all along; a hostile client, from another
// source address, sends abuse at a much higher fixed rate in every other
// phase only. Victims' latency is compared between the quiet and the
// hostile phases, which alternate so that the machine's own noise falls on
// both sides.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/finsvc/finance/loadtest/internal/hostcpu"
	"github.com/finsvc/finance/loadtest/internal/loadgen"
	"github.com/finsvc/finance/pkg/auth"
)

// Hostile is the hostile-client scenario's name.
const Hostile = "hostile"

// HostileSummary describes the scenario for `loadtest scenarios`.
const HostileSummary = "2,000 users at 400 requests/s (feeds, balances, 5% small payments) while, in every other of " +
	"8 phases of 15 s, a client from 127.0.0.2 sends 3,000 abusive requests/s: victims' p99 in hostile phases ≤ 1.2 × quiet"

// Kinds of hostile request, each answered by a refusal when the gateway
// does its job.
const (
	KindOwnFeed        = "own-feed"        // its own token, its own feed, far above the user limit: 429
	KindOwnPayment     = "own-payment"     // its own token, valid payments, far above the user limit: 429
	KindForgedToken    = "forged-token"    // a token signed with another secret: 401
	KindExpiredToken   = "expired-token"   // a token signed right but expired an hour ago: 401
	KindForeignFeed    = "foreign-feed"    // a victim's feed with one of its other accounts' tokens: 403
	KindForeignPayment = "foreign-payment" // payments by id it does not own (mostly absent): 403 or 404
	KindOversized      = "oversized"       // a payment body over the 64 KiB cap: 413
	KindBadJSON        = "bad-json"        // a payment body that is not JSON: 400
)

// HostileKinds are the hostile requests, sent in turn in this order.
var HostileKinds = []string{KindOwnFeed, KindOwnPayment, KindForgedToken, KindExpiredToken,
	KindForeignFeed, KindForeignPayment, KindOversized, KindBadJSON}

// oversizedBytes is one byte over the gateway's body cap (64 KiB).
const oversizedBytes = 64<<10 + 1

// HostileConfig is one hostile run.
type HostileConfig struct {
	URL string
	// Victims are users FirstUser..FirstUser+Users-1, each with its own
	// token, reading its own feed or balance (BalanceRatio of reads) or
	// paying a demo merchant (PaymentRatio of requests); request i is due at
	// start + i/Rate (open model) and belongs to user i mod Users.
	FirstUser    int64
	Users        int
	Rate         float64
	PaymentRatio float64
	BalanceRatio float64
	Merchants    []int64
	// The hostile client owns Accounts users right after the victims: the
	// first hammers with its own token, the others' tokens touch victims'
	// resources and send bad bodies. It sends at HostileRate (open model)
	// from Source (an address of this machine; "" leaves it to the
	// kernel) over at most HostileConns connections; a request due while
	// all of them are busy is skipped and counted.
	Accounts    int
	HostileRate float64
	// Kinds are the hostile's requests, sent in turn (HostileKinds: all).
	Kinds        []string
	Source       string
	HostileConns int
	// Phases alternate quiet (even) and hostile (odd), each Phase long,
	// after a Warmup of victims only that is not measured.
	Phases   int
	Phase    time.Duration
	Warmup   time.Duration
	MaxConns int
	Timeout  time.Duration
	Secret   []byte
	// RunID prefixes the payments' Idempotency-Keys.
	RunID string
	Seed  uint64
	// Hostile, if set, runs the hostile client (RunHostileSide) elsewhere,
	// its phases counted from measured; nil runs it in this process.
	Hostile func(ctx context.Context, measured time.Time) (*HostileSide, error)
	// CPU, if set, returns the target's CPU seconds so far; it is read at
	// every phase boundary.
	CPU func(ctx context.Context) (float64, error)
	// Progress, if set, is called about once a second.
	Progress func(elapsed time.Duration, phase int, hostile bool, victims int64, p99 float64)
}

// HostileDefaults are the scenario's defaults. Why these: 400 requests/s
// of 2,000 users is a tenth of what one gateway serves on two cores, so
// the victims alone leave room and their p99 shows queueing, not
// saturation; 3,000/s is 150× the hostile's per-user limit (20/s) and
// below the per-address limit (10,000/s), so every abusive request gets
// through the server's front door to the layer whose refusal is under
// test, and it is what one generator can send beside the victims on this
// machine. Eight phases of 15 s give each side four turns spread over two
// minutes, and 24,000 victim requests, so a p99 rests on 240 of them.
func HostileDefaults() HostileConfig {
	return HostileConfig{Users: 2_000, Rate: 400, PaymentRatio: 0.05, BalanceRatio: 0.5,
		Accounts: 100, HostileRate: 3_000, Kinds: HostileKinds, Source: "127.0.0.2", HostileConns: 256,
		Phases: 8, Phase: 15 * time.Second, Warmup: 5 * time.Second, MaxConns: 1_000,
		Timeout: 10 * time.Second, Seed: 1}
}

// Validate reports every problem of c at once.
func (c HostileConfig) Validate() error {
	var errs []error
	if c.Users < 1 {
		errs = append(errs, fmt.Errorf("--users %d: want at least 1", c.Users))
	}
	if c.Rate <= 0 || c.HostileRate <= 0 {
		errs = append(errs, fmt.Errorf("--rate %v and --hostile-rate %v: want more than 0", c.Rate, c.HostileRate))
	}
	if c.PaymentRatio < 0 || c.PaymentRatio > 1 || c.BalanceRatio < 0 || c.BalanceRatio > 1 {
		errs = append(errs, fmt.Errorf("--payment-ratio %v and --balance-ratio %v: want 0..1", c.PaymentRatio, c.BalanceRatio))
	}
	if c.PaymentRatio > 0 && len(c.Merchants) == 0 {
		errs = append(errs, errors.New("payments need merchants"))
	}
	if c.Accounts < 2 {
		errs = append(errs, fmt.Errorf("--hostile-accounts %d: want at least 2 (one hammers, the others trespass)", c.Accounts))
	}
	if len(c.Kinds) == 0 {
		errs = append(errs, errors.New("--hostile-kinds: want at least one"))
	}
	for _, k := range c.Kinds {
		if !slices.Contains(HostileKinds, k) {
			errs = append(errs, fmt.Errorf("--hostile-kinds: unknown kind %q (want some of %s)", k, strings.Join(HostileKinds, ",")))
		}
	}
	if c.Source != "" && net.ParseIP(c.Source) == nil {
		errs = append(errs, fmt.Errorf("--hostile-source %q: want an IP address of this machine", c.Source))
	}
	if c.HostileConns < 1 || c.MaxConns < 1 {
		errs = append(errs, fmt.Errorf("--hostile-conns %d and --max-conns %d: want at least 1", c.HostileConns, c.MaxConns))
	}
	if c.Phases < 2 || c.Phases%2 != 0 {
		errs = append(errs, fmt.Errorf("--phases %d: want an even number, at least 2 (quiet, hostile, ...)", c.Phases))
	}
	if c.Phase <= 0 || c.Warmup < 0 || c.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("--phase %s, --warmup %s, --timeout %s: want more than 0", c.Phase, c.Warmup, c.Timeout))
	}
	return errors.Join(errs...)
}

// PhaseOf returns the phase a request due offset after the measurement's
// start falls in, or -1 before it (the warm-up) and after the last phase.
func PhaseOf(offset, phase time.Duration, phases int) int {
	if offset < 0 || phase <= 0 {
		return -1
	}
	p := int(offset / phase)
	if p >= phases {
		return -1
	}
	return p
}

// IsHostilePhase reports whether phase p has the hostile client on: the
// odd ones, so that a run starts quiet and quiet and hostile alternate.
func IsHostilePhase(p int) bool { return p%2 == 1 }

// PhaseResult is one phase as measured.
type PhaseResult struct {
	Index   int     `json:"index"`
	Hostile bool    `json:"hostile"`
	Victims Latency `json:"victims"`
	// SendLagP99 is how late the victims' requests left the generator
	// (p99): its own share of their latency, when it is short of CPU.
	SendLagP99 float64 `json:"victim_send_lag_p99_ms"`
	// VictimErrors counts the victims' non-2xx answers and failures by
	// status or class.
	VictimErrors map[string]int64 `json:"victim_errors,omitempty"`
	// HostileSent and HostileSkipped are the hostile requests sent and
	// those due while every hostile connection was busy.
	HostileSent    int64   `json:"hostile_sent,omitempty"`
	HostileSkipped int64   `json:"hostile_skipped,omitempty"`
	HostileRate    float64 `json:"hostile_rate,omitempty"`
	// TargetCPU is the target's CPU seconds during the phase, and
	// TargetCores that over the phase's length.
	TargetCPU   float64 `json:"target_cpu_seconds"`
	TargetCores float64 `json:"target_cores"`
	CPUErr      string  `json:"cpu_err,omitempty"`
	// GeneratorCPU is the load generator's own CPU seconds in the phase:
	// on one machine it competes with the target for the same cores.
	GeneratorCPU float64 `json:"generator_cpu_seconds"`
	// Steal is the share of the machine's CPU time the hypervisor gave to
	// other guests in the phase (hostcpu); StealErr why it is unknown.
	Steal    float64 `json:"machine_steal_share"`
	StealErr string  `json:"machine_steal_err,omitempty"`
}

// HostileResult is what a hostile run measured on the client's side.
type HostileResult struct {
	StartedAt time.Time     `json:"started_at"`
	Elapsed   time.Duration `json:"elapsed"`
	Phases    []PhaseResult `json:"phases"`
	// Quiet and Hostile pool the victims' latencies of each side's phases.
	Quiet   Latency `json:"victims_quiet"`
	Hostile Latency `json:"victims_hostile"`
	// VictimOK counts the victims' 2xx answers in the measured phases;
	// VictimErrors the rest, over the whole run, warm-up included.
	VictimOK     int64            `json:"victim_ok"`
	VictimErrors map[string]int64 `json:"victim_errors,omitempty"`
	// VictimFirstError is the first failure's text.
	VictimFirstError string `json:"victim_first_error,omitempty"`
	// HostileAnswers counts the hostile's answers by kind and status
	// ("net_error" and "timeout" for no answer).
	HostileAnswers map[string]map[string]int64 `json:"hostile_answers"`
	HostileSent    int64                       `json:"hostile_sent"`
	HostileSkipped int64                       `json:"hostile_skipped"`
	// HostileRate is what the hostile sent in its phases, per second of
	// hostile phase; HostileOffered what fell due (sent, or skipped while
	// every connection waited on the gateway); HostileLagP99 how late its
	// schedule ran (p99, ms): a hostile client short of CPU offered less
	// than its rate.
	HostileRate    float64 `json:"hostile_rate"`
	HostileOffered float64 `json:"hostile_offered"`
	HostileLagP99  float64 `json:"hostile_schedule_lag_p99_ms"`
	SendLagP99     float64 `json:"victim_send_lag_p99_ms,omitempty"`
	// GeneratorCPUHostile is the CPU seconds of the hostile client's own
	// process, when it ran in one.
	GeneratorCPUHostile float64 `json:"generator_cpu_seconds_hostile,omitempty"`
}

// phaseRec collects one phase's victims and hostile counts.
type phaseRec struct {
	lat, lag      *hdrhistogram.Histogram
	errs          map[string]int64
	sent, skipped int64
}

// hostileRec collects a hostile run; safe for concurrent use.
type hostileRec struct {
	mu       sync.Mutex
	phases   []phaseRec
	lag      *hdrhistogram.Histogram
	ok       int64
	errs     map[string]int64
	firstErr string
	answers  map[string]map[string]int64
	victims  atomic.Int64
	recent   *hdrhistogram.Histogram // for the progress line
}

func newHostileRec(phases int) *hostileRec {
	h := func() *hdrhistogram.Histogram { return hdrhistogram.New(histMin, histMax, 3) }
	r := &hostileRec{phases: make([]phaseRec, phases), lag: h(), recent: h(), errs: map[string]int64{},
		answers: map[string]map[string]int64{}}
	for i := range r.phases {
		r.phases[i] = phaseRec{lat: h(), lag: h(), errs: map[string]int64{}}
	}
	return r
}

// victim records one victim request of phase p (-1: not measured).
func (r *hostileRec) victim(p int, latency, lag time.Duration, class, errText string) {
	r.victims.Add(1)
	us := min(max(latency.Microseconds(), histMin), histMax)
	r.mu.Lock()
	defer r.mu.Unlock()
	if class != "" {
		r.errs[class]++
		if r.firstErr == "" {
			r.firstErr = errText
		}
		if p >= 0 {
			r.phases[p].errs[class]++
		}
		return
	}
	_ = r.recent.RecordValue(us)
	if p < 0 {
		return
	}
	r.ok++
	_ = r.phases[p].lat.RecordValue(us)
	if lag > 0 {
		lus := min(max(lag.Microseconds(), histMin), histMax)
		_ = r.lag.RecordValue(lus)
		_ = r.phases[p].lag.RecordValue(lus)
	}
}

// hostile records one hostile answer.
func (r *hostileRec) hostile(kind, status string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.answers[kind]
	if m == nil {
		m = map[string]int64{}
		r.answers[kind] = m
	}
	m[status]++
}

// recentP99 is the p99 of the victims since the last call.
func (r *hostileRec) recentP99() float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	v := float64(r.recent.ValueAtQuantile(99)) / 1000
	r.recent.Reset()
	return v
}

// hostileClient sends both sides' requests.
type hostileClient struct {
	cfg      HostileConfig
	base     string
	victims  *http.Client
	hostile  *http.Client
	tokens   []string // victims'
	accounts []string // the hostile's own users'
	forged   []string
	expired  []string
	big      []byte
}

func newHostileClient(cfg HostileConfig) (*hostileClient, error) {
	c := &hostileClient{cfg: cfg, base: strings.TrimRight(cfg.URL, "/"), big: bytes.Repeat([]byte(" "), oversizedBytes)}
	vd := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	c.victims = &http.Client{Timeout: cfg.Timeout, Transport: &http.Transport{Proxy: nil, DialContext: vd.DialContext,
		MaxIdleConns: cfg.MaxConns, MaxIdleConnsPerHost: cfg.MaxConns, MaxConnsPerHost: cfg.MaxConns,
		IdleConnTimeout: 90 * time.Second, DisableCompression: true}}
	hd := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	if cfg.Source != "" {
		hd.LocalAddr = &net.TCPAddr{IP: net.ParseIP(cfg.Source)}
	}
	c.hostile = &http.Client{Timeout: cfg.Timeout, Transport: &http.Transport{Proxy: nil, DialContext: hd.DialContext,
		MaxIdleConns: cfg.HostileConns, MaxIdleConnsPerHost: cfg.HostileConns, MaxConnsPerHost: cfg.HostileConns,
		IdleConnTimeout: 90 * time.Second, DisableCompression: true}}
	now := time.Now()
	ttl := time.Duration(cfg.Phases)*cfg.Phase + cfg.Warmup + cfg.Timeout + time.Hour
	wrong := []byte("not-the-gateway-secret-" + cfg.RunID)
	for u := range cfg.Users {
		t, err := auth.Mint(cfg.Secret, cfg.FirstUser+int64(u), false, ttl, now)
		if err != nil {
			return nil, fmt.Errorf("mint the victims' tokens: %w", err)
		}
		c.tokens = append(c.tokens, t)
	}
	for a := range cfg.Accounts {
		user := cfg.FirstUser + int64(cfg.Users+a)
		t, err := auth.Mint(cfg.Secret, user, false, ttl, now)
		if err != nil {
			return nil, fmt.Errorf("mint the hostile's tokens: %w", err)
		}
		c.accounts = append(c.accounts, t)
		// A forged token claims a victim, signed with a secret the
		// gateway does not know; an expired one is the hostile's own,
		// signed right, expired an hour ago.
		f, err := auth.Mint(wrong, cfg.FirstUser+int64(a%cfg.Users), false, ttl, now)
		if err != nil {
			return nil, err
		}
		e, err := auth.Mint(cfg.Secret, user, false, time.Minute, now.Add(-time.Hour))
		if err != nil {
			return nil, err
		}
		c.forged, c.expired = append(c.forged, f), append(c.expired, e)
	}
	return c, nil
}

func (c *hostileClient) close() {
	c.victims.CloseIdleConnections()
	c.hostile.CloseIdleConnections()
}

// send does req with client and returns its status ("200", "429", ...),
// or "timeout" or "net_error", and the body of a non-2xx answer.
func send(client *http.Client, req *http.Request) (string, string) {
	resp, err := client.Do(req)
	if err != nil {
		var ne net.Error
		if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
			return "timeout", err.Error()
		}
		return "net_error", err.Error()
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 == 2 {
		_, _ = io.Copy(io.Discard, resp.Body)
		return strconv.Itoa(resp.StatusCode), ""
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
	_, _ = io.Copy(io.Discard, resp.Body)
	return strconv.Itoa(resp.StatusCode), string(b)
}

// payBody is a payment's JSON body.
func payBody(user, merchant, amount int64) []byte {
	return []byte(`{"user_id":` + strconv.FormatInt(user, 10) + `,"merchant_id":` + strconv.FormatInt(merchant, 10) +
		`,"amount":` + strconv.FormatInt(amount, 10) + `}`)
}

// victimRequest is victim request i: a payment (PaymentRatio of them,
// evenly interleaved) or a read of the user's own feed or balance.
func (c *hostileClient) victimRequest(ctx context.Context, i int64, rnd *rand.Rand) *http.Request {
	slot := i % int64(c.cfg.Users)
	user := c.cfg.FirstUser + slot
	u := strconv.FormatInt(user, 10)
	var req *http.Request
	if math.Floor(float64(i+1)*c.cfg.PaymentRatio) > math.Floor(float64(i)*c.cfg.PaymentRatio) {
		m := c.cfg.Merchants[int(i)%len(c.cfg.Merchants)]
		req, _ = http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/v1/payments", bytes.NewReader(payBody(user, m, -100)))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", c.cfg.RunID+"-v"+strconv.FormatInt(i, 10))
	} else if rnd.Float64() < c.cfg.BalanceRatio {
		req, _ = http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/v1/users/"+u+"/balance", nil)
	} else {
		req, _ = http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/v1/users/"+u+"/feed", nil)
	}
	req.Header.Set("Authorization", "Bearer "+c.tokens[slot])
	return req
}

// hostileRequest is hostile request j, of kind Kinds[j mod len(Kinds)].
func (c *hostileClient) hostileRequest(ctx context.Context, j int64) (string, *http.Request) {
	kind := c.cfg.Kinds[j%int64(len(c.cfg.Kinds))]
	round := j / int64(len(c.cfg.Kinds))
	// The other accounts take turns, so each stays below its user limit
	// and reaches the check that should refuse it.
	other := 1 + int(round%int64(c.cfg.Accounts-1))
	own := c.cfg.FirstUser + int64(c.cfg.Users)
	victim := c.cfg.FirstUser + round%int64(c.cfg.Users)
	tok := c.accounts[0]
	var req *http.Request
	post := func(body io.Reader) {
		req, _ = http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/v1/payments", body)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", c.cfg.RunID+"-h"+strconv.FormatInt(j, 10))
	}
	get := func(path string) {
		req, _ = http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	}
	switch kind {
	case KindOwnFeed:
		get("/v1/users/" + strconv.FormatInt(own, 10) + "/feed")
	case KindOwnPayment:
		post(bytes.NewReader(payBody(own, c.cfg.Merchants[0], -1)))
	case KindForgedToken:
		get("/v1/users/" + strconv.FormatInt(victim, 10) + "/feed")
		tok = c.forged[other]
	case KindExpiredToken:
		get("/v1/users/" + strconv.FormatInt(own+int64(other), 10) + "/balance")
		tok = c.expired[other]
	case KindForeignFeed:
		get("/v1/users/" + strconv.FormatInt(victim, 10) + "/feed")
		tok = c.accounts[other]
	case KindForeignPayment:
		get("/v1/payments/" + strconv.FormatInt(1+round*7919%1_000_000_000, 10))
		tok = c.accounts[other]
	case KindOversized:
		post(bytes.NewReader(c.big))
		tok = c.accounts[other]
	case KindBadJSON:
		post(strings.NewReader(`{"user_id":` + strconv.FormatInt(own+int64(other), 10) + `,"amount":-1,`))
		tok = c.accounts[other]
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	return kind, req
}

// waitUntil sleeps until t or ctx's end, and reports whether t came.
func waitUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-tm.C:
		return true
	}
}

// RunHostile runs cfg's phases and returns what both sides saw: the
// victims here, the hostile client through cfg.Hostile (another process)
// or, when that is nil, here too.
func RunHostile(ctx context.Context, cfg HostileConfig) (*HostileResult, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c, err := newHostileClient(cfg)
	if err != nil {
		return nil, err
	}
	defer c.close()
	rec := newHostileRec(cfg.Phases)
	// The hostile side, in another process, needs time to start.
	start := time.Now().Add(100*time.Millisecond + map[bool]time.Duration{true: time.Second}[cfg.Hostile != nil])
	measured := start.Add(cfg.Warmup)
	end := measured.Add(time.Duration(cfg.Phases) * cfg.Phase)
	lctx, cancel := context.WithDeadline(ctx, end.Add(cfg.Timeout))
	defer cancel()

	var wg sync.WaitGroup
	// The victims: one dispatcher, a goroutine per request (open model).
	wg.Add(1)
	go func() {
		defer wg.Done()
		var reqs sync.WaitGroup
		defer reqs.Wait()
		rnd := rand.New(rand.NewPCG(cfg.Seed, 1))
		for i := int64(0); ; i++ {
			due := start.Add(time.Duration(float64(i) / cfg.Rate * float64(time.Second)))
			if !due.Before(end) || !waitUntil(lctx, due) {
				return
			}
			req := c.victimRequest(lctx, i, rnd)
			p := PhaseOf(due.Sub(measured), cfg.Phase, cfg.Phases)
			reqs.Add(1)
			go func() {
				defer reqs.Done()
				sent := time.Now()
				status, body := send(c.victims, req)
				if lctx.Err() != nil && status[0] != '2' {
					return // the run was interrupted
				}
				class := ""
				if status[0] != '2' {
					class = status
				}
				rec.victim(p, time.Since(due), sent.Sub(due), class, status+" "+body)
			}()
		}
	}()

	var side *HostileSide
	var sideErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		if cfg.Hostile != nil {
			// The hostile process ends itself at the same deadline, its
			// requests held by the gateway cancelled; the grace lets it
			// report before it is killed.
			hctx, cancel := context.WithDeadline(ctx, end.Add(cfg.Timeout+hostileExitGrace))
			defer cancel()
			side, sideErr = cfg.Hostile(hctx, measured)
			return
		}
		side, sideErr = runHostileSide(lctx, c, cfg, measured)
	}()

	// The target's CPU at every phase boundary, and the progress line.
	cpu, gen := make([]float64, cfg.Phases+1), make([]float64, cfg.Phases+1)
	cpuErr := make([]string, cfg.Phases+1)
	steal, stealErr := make([]float64, cfg.Phases), make([]string, cfg.Phases)
	var meter *hostcpu.Meter
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for b := 0; b <= cfg.Phases; {
			at := measured.Add(time.Duration(b) * cfg.Phase)
			select {
			case <-lctx.Done():
				return
			case now := <-tick.C:
				if cfg.Progress != nil {
					el := now.Sub(start)
					p := PhaseOf(now.Sub(measured), cfg.Phase, cfg.Phases)
					cfg.Progress(el, p, p >= 0 && IsHostilePhase(p), rec.victims.Load(), rec.recentP99())
				}
				continue
			case <-time.After(time.Until(at)):
			}
			gen[b] = loadgen.CPUSeconds()
			if b == 0 {
				meter = hostcpu.NewMeter()
			} else if share, err := meter.Next(); err == nil {
				steal[b-1] = share
			} else {
				stealErr[b-1] = err.Error()
			}
			if cfg.CPU != nil {
				v, err := cfg.CPU(lctx)
				cpu[b] = v
				if err != nil {
					cpuErr[b] = err.Error()
				}
			}
			b++
		}
	}()
	wg.Wait()
	if sideErr != nil && ctx.Err() == nil {
		return nil, fmt.Errorf("the hostile client: %w", sideErr)
	}
	if side == nil {
		side = &HostileSide{}
	}
	res := &HostileResult{StartedAt: start, Elapsed: time.Since(start), HostileAnswers: side.Answers,
		GeneratorCPUHostile: side.CPUSeconds, HostileLagP99: side.LagP99}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	quiet, hostile := hdrhistogram.New(histMin, histMax, 3), hdrhistogram.New(histMin, histMax, 3)
	var hostileSeconds float64
	for i, ph := range rec.phases {
		pr := PhaseResult{Index: i, Hostile: IsHostilePhase(i), Victims: latencyOf(ph.lat), VictimErrors: ph.errs,
			SendLagP99: latencyOf(ph.lag).P99}
		if i < len(side.Sent) && i < len(side.Skipped) {
			pr.HostileSent, pr.HostileSkipped = side.Sent[i], side.Skipped[i]
		}
		if len(pr.VictimErrors) == 0 {
			pr.VictimErrors = nil
		}
		if pr.Hostile {
			pr.HostileRate = round1(float64(pr.HostileSent) / cfg.Phase.Seconds())
			res.HostileSent += pr.HostileSent
			res.HostileSkipped += pr.HostileSkipped
			hostileSeconds += cfg.Phase.Seconds()
			hostile.Merge(ph.lat)
		} else {
			quiet.Merge(ph.lat)
		}
		if cfg.CPU != nil {
			pr.CPUErr = cpuErr[i] + cpuErr[i+1]
			if pr.CPUErr == "" {
				pr.TargetCPU = round2(cpu[i+1] - cpu[i])
				pr.TargetCores = round2(pr.TargetCPU / cfg.Phase.Seconds())
			}
		}
		pr.GeneratorCPU = round2(gen[i+1] - gen[i])
		pr.Steal, pr.StealErr = steal[i], stealErr[i]
		res.Phases = append(res.Phases, pr)
	}
	res.Quiet, res.Hostile = latencyOf(quiet), latencyOf(hostile)
	res.VictimOK, res.VictimErrors, res.VictimFirstError = rec.ok, rec.errs, rec.firstErr
	if len(res.VictimErrors) == 0 {
		res.VictimErrors = nil
	}
	if hostileSeconds > 0 {
		res.HostileRate = round1(float64(res.HostileSent) / hostileSeconds)
		res.HostileOffered = round1(float64(res.HostileSent+res.HostileSkipped) / hostileSeconds)
	}
	res.SendLagP99 = latencyOf(rec.lag).P99
	return res, ctx.Err()
}

// hostileExitGrace is how long the hostile client's process has, after
// its own deadline, to report what it did.
const hostileExitGrace = 10 * time.Second

// HostileSide is what the hostile client did: per phase the requests it
// sent and skipped, how late its schedule ran (p99, ms), its answers by
// kind and status, and the CPU seconds its process used (when it ran in
// its own).
type HostileSide struct {
	Sent       []int64                     `json:"sent"`
	Skipped    []int64                     `json:"skipped"`
	LagP99     float64                     `json:"schedule_lag_p99_ms"`
	Answers    map[string]map[string]int64 `json:"answers"`
	CPUSeconds float64                     `json:"cpu_seconds,omitempty"`
}

// RunHostileSide runs cfg's hostile client alone, its phases counted from
// measured: the body of the process `loadtest run --scenario hostile`
// starts for it (so that the victims' generator does not share its Go
// scheduler with the hostile's hundreds of connections, as a real hostile
// client would not).
func RunHostileSide(ctx context.Context, cfg HostileConfig, measured time.Time) (*HostileSide, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c, err := newHostileClient(cfg)
	if err != nil {
		return nil, err
	}
	defer c.close()
	end := measured.Add(time.Duration(cfg.Phases) * cfg.Phase)
	lctx, cancel := context.WithDeadline(ctx, end.Add(cfg.Timeout))
	defer cancel()
	cpu0 := loadgen.CPUSeconds()
	side, err := runHostileSide(lctx, c, cfg, measured)
	if side != nil {
		side.CPUSeconds = round2(loadgen.CPUSeconds() - cpu0)
	}
	return side, err
}

// runHostileSide sends the hostile's requests: in each hostile phase, one
// dispatcher feeding a fixed pool of workers, one a connection.
func runHostileSide(ctx context.Context, c *hostileClient, cfg HostileConfig, measured time.Time) (*HostileSide, error) {
	rec := newHostileRec(cfg.Phases)
	work := make(chan int64, cfg.HostileConns)
	var workers sync.WaitGroup
	for range cfg.HostileConns {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for j := range work {
				kind, req := c.hostileRequest(ctx, j)
				status, _ := send(c.hostile, req)
				if ctx.Err() != nil && status[0] != '2' && status[0] != '4' {
					continue
				}
				rec.hostile(kind, status)
			}
		}()
	}
	j := int64(0)
	lag := hdrhistogram.New(histMin, histMax, 3)
	// awake is when the schedule last slept until a request fell due. One
	// wake-up sends every request due within the millisecond after it: at
	// 3,000/s a timer per request cost this process about 19 µs of CPU a
	// request, more than its sends, and on one machine that CPU is taken
	// from the victims, which a hostile client on its own host would not do.
	var awake time.Time
	for p := 1; p < cfg.Phases && ctx.Err() == nil; p += 2 {
		from := measured.Add(time.Duration(p) * cfg.Phase)
		for k := int64(0); ; k++ {
			due := from.Add(time.Duration(float64(k) / cfg.HostileRate * float64(time.Second)))
			if !due.Before(from.Add(cfg.Phase)) || ctx.Err() != nil {
				break
			}
			if due.After(awake.Add(time.Millisecond)) {
				if !waitUntil(ctx, due) {
					break
				}
				awake = time.Now()
			}
			_ = lag.RecordValue(min(max(time.Since(due).Microseconds(), histMin), histMax))
			select {
			case work <- j:
				rec.phases[p].sent++
			default:
				rec.phases[p].skipped++
			}
			j++
		}
	}
	// Ended before its last phase did: the run was cut short. Requests
	// still held by the gateway after that are cancelled at ctx's deadline.
	interrupted := ctx.Err()
	close(work)
	workers.Wait()
	side := &HostileSide{Answers: rec.answers, LagP99: latencyOf(lag).P99}
	for _, ph := range rec.phases {
		side.Sent = append(side.Sent, ph.sent)
		side.Skipped = append(side.Skipped, ph.skipped)
	}
	return side, interrupted
}
