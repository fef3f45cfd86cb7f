// Package sim is the payment processor simulator: it settles payments under
// a rate limit, a latency distribution and injected faults, keeps the
// idempotency keys of the proposed API, and records every execution so that
// tests and reconciliation can compare what the processor did with what the
// Finance Service believes.
package sim

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Errors of a payment call. None of them executed the payment, except
// ErrClientGone when the Result says Executed.
var (
	// ErrInjected is a simulated processor failure (SIM_ERROR_RATE): 500,
	// nothing executed.
	ErrInjected = errors.New("simulated processor error")
	// ErrKeyReuse means the idempotency key belongs to a different request.
	ErrKeyReuse = errors.New("idempotency key reused with a different request")
	// ErrClientGone means the caller went away (its context ended) mid-call.
	ErrClientGone = errors.New("client went away")
	// ErrNotFound means no payment is known under the idempotency key.
	ErrNotFound = errors.New("no payment under this idempotency key")
)

// OutageError rejects a call during a simulated outage, without executing.
type OutageError struct {
	Until time.Time
	// Remaining is how long the outage still lasts.
	Remaining time.Duration
}

// Seconds returns Remaining as whole seconds for a Retry-After header,
// rounded up and at least 1.
func (e *OutageError) Seconds() int { return ceilSeconds(e.Remaining) }

// Error implements error.
func (e *OutageError) Error() string {
	return "processor outage until " + e.Until.UTC().Format(time.RFC3339)
}

// RateLimitError rejects a call above the rate limit, without executing.
type RateLimitError struct {
	// RetryAfter is when the limiter will have room for this call.
	RetryAfter time.Duration
}

// Error implements error.
func (e *RateLimitError) Error() string {
	return fmt.Sprintf("rate limit exceeded, retry after %s", e.RetryAfter)
}

// Seconds returns RetryAfter as whole seconds for a Retry-After header,
// rounded up and at least 1.
func (e *RateLimitError) Seconds() int { return ceilSeconds(e.RetryAfter) }

func ceilSeconds(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}

// Call is one payment request as the API received it.
type Call struct {
	API API
	// Key is the idempotency key; empty for the as-is API, which has none.
	Key       string
	UserID    int64
	Amount    int64
	Reference string
}

// hash fingerprints the request body so that a reused key with another
// body is told apart from a retry.
func (c Call) hash() string {
	h := sha256.New()
	h.Write(strconv.AppendInt(nil, c.UserID, 10))
	h.Write([]byte{0})
	h.Write(strconv.AppendInt(nil, c.Amount, 10))
	h.Write([]byte{0})
	h.Write([]byte(c.Reference))
	return hex.EncodeToString(h.Sum(nil))
}

// Result is what a call did.
type Result struct {
	// Resource is the settled payment; zero when nothing settled.
	Resource Resource
	// Executed is true when this call executed the payment (not a replay,
	// not a decline).
	Executed bool
	// Replayed is true when the key was already settled: nothing ran again.
	Replayed bool
	// DropResponse asks the transport to close the connection instead of
	// replying (SIM_LOST_RESPONSE_RATE).
	DropResponse bool
}

// Settled reports whether this call settled a new outcome (executed or
// declined), as opposed to replaying one or being rejected.
func (r Result) Settled() bool { return r.Resource.ID != "" && !r.Replayed }

// Options configure a Simulator.
type Options struct {
	Settings Settings
	// KeyTTL is how long an idempotency key is kept after its payment settled.
	KeyTTL time.Duration
	// Seed seeds the random source behind latency and faults.
	Seed uint64
	// DataFile, when set, is the JSON-lines journal reloaded at start.
	DataFile string
	// Now is the clock; nil means time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// Simulator is the simulated processor. It is safe for concurrent use.
type Simulator struct {
	now     func() time.Time
	logger  *slog.Logger
	limiter *rate.Limiter
	keys    *keyStore
	journal *journal

	mu          sync.Mutex // guards the fields below
	settings    Settings
	latency     logNormal
	rng         *rand.Rand
	outageUntil time.Time
}

// New returns a Simulator, reloading the data file if one is configured.
func New(opts Options) (*Simulator, error) {
	if err := opts.Settings.Validate(); err != nil {
		return nil, err
	}
	if opts.KeyTTL <= 0 {
		return nil, fmt.Errorf("key TTL %v: must be > 0", opts.KeyTTL)
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	j, recs, rep, err := openJournal(opts.DataFile)
	if err != nil {
		return nil, err
	}
	s := &Simulator{
		now:      now,
		logger:   logger,
		limiter:  rate.NewLimiter(rate.Limit(opts.Settings.RateLimit), opts.Settings.RateBurst),
		keys:     newKeyStore(opts.KeyTTL),
		journal:  j,
		settings: opts.Settings,
		latency:  fitLogNormal(time.Duration(opts.Settings.LatencyP50), time.Duration(opts.Settings.LatencyP99)),
		rng:      rand.New(rand.NewPCG(opts.Seed, opts.Seed^0x9e3779b97f4a7c15)),
	}
	t := now()
	for _, r := range recs {
		if r.IdempotencyKey != "" {
			s.keys.restore(r.IdempotencyKey, r.RequestHash, r.Resource, t)
		}
	}
	if opts.DataFile != "" {
		logger.Info("data file loaded", "path", opts.DataFile, "records", rep.records,
			"executions", rep.executions, "keys", s.keys.len())
		if rep.truncated > 0 {
			logger.Warn("data file ended in an unfinished line; dropped it", "path", opts.DataFile, "bytes", rep.truncated)
		}
	}
	return s, nil
}

// Close closes the data file.
func (s *Simulator) Close() error { return s.journal.close() }

// Settings returns the current settings.
func (s *Simulator) Settings() Settings {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.settings
}

// UpdateSettings applies p if the result is valid and returns the settings
// now in force; on error nothing changes.
func (s *Simulator) UpdateSettings(p Patch) (Settings, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	next := s.settings.Apply(p)
	if err := next.Validate(); err != nil {
		return s.settings, err
	}
	t := s.now()
	s.limiter.SetLimitAt(t, rate.Limit(next.RateLimit))
	s.limiter.SetBurstAt(t, next.RateBurst)
	s.latency = fitLogNormal(time.Duration(next.LatencyP50), time.Duration(next.LatencyP99))
	s.settings = next
	return next, nil
}

// StartOutage makes every payment call fail with 503 for d and returns when
// the outage ends.
func (s *Simulator) StartOutage(d time.Duration) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.outageUntil = s.now().Add(d)
	return s.outageUntil
}

// EndOutage ends an outage now.
func (s *Simulator) EndOutage() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.outageUntil = time.Time{}
}

// OutageUntil returns the end of the current outage, or the zero time.
func (s *Simulator) OutageUntil() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.now().Before(s.outageUntil) {
		return time.Time{}
	}
	return s.outageUntil
}

// plan is the dice thrown for one call.
type plan struct {
	latency time.Duration
	fail    bool // answer 500 without executing
	decline bool
	drop    bool // close the connection instead of replying
}

// admit lets a call in, or rejects it without executing during an outage
// or above the rate limit, and draws its plan.
func (s *Simulator) admit() (plan, error) {
	t := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if t.Before(s.outageUntil) {
		return plan{}, &OutageError{Until: s.outageUntil, Remaining: s.outageUntil.Sub(t)}
	}
	r := s.limiter.ReserveN(t, 1)
	if !r.OK() {
		return plan{}, &RateLimitError{RetryAfter: time.Second}
	}
	if d := r.DelayFrom(t); d > 0 {
		// Hand the token back: a rejected call must not slow the next ones.
		r.CancelAt(t)
		return plan{}, &RateLimitError{RetryAfter: d}
	}
	return plan{
		latency: s.latency.sample(s.rng),
		fail:    s.rng.Float64() < s.settings.ErrorRate,
		decline: s.rng.Float64() < s.settings.DeclineRate,
		drop:    s.rng.Float64() < s.settings.LostResponseRate,
	}, nil
}

// Pay handles one payment call:
//
//  1. outage and rate limit: rejected, nothing executed;
//  2. the idempotency key is claimed for the whole call. A known key is a
//     replay; a key in flight makes this call wait for that one (no 409);
//  3. the first half of the latency, the processor "working": a caller
//     leaving now executes nothing and frees the key;
//  4. an injected error: 500, nothing executed, the key freed;
//  5. execute (or decline) and record it under the key;
//  6. the second half of the latency: a caller leaving now has executed but
//     sees no reply, like a real timeout;
//  7. maybe ask the transport to drop the reply.
func (s *Simulator) Pay(ctx context.Context, c Call) (Result, error) {
	p, err := s.admit()
	if err != nil {
		return Result{}, err
	}
	h := c.hash()
	var replay *Resource
	owned := false // this call holds the key and must settle or release it
	if c.Key != "" {
		replay, err = s.keys.claim(ctx, c.Key, h, s.now())
		switch {
		case errors.Is(err, ErrKeyReuse):
			return Result{}, err
		case err != nil:
			return Result{}, fmt.Errorf("%w waiting for the same key in flight: %w", ErrClientGone, err)
		}
		owned = replay == nil
	}
	release := func() {
		if owned {
			s.keys.release(c.Key)
		}
	}
	before := p.latency / 2
	if err := sleep(ctx, before); err != nil {
		release()
		return Result{}, fmt.Errorf("%w before execution: %w", ErrClientGone, err)
	}
	if p.fail {
		release()
		return Result{}, ErrInjected
	}
	res := Result{Replayed: true}
	if replay != nil {
		res.Resource = *replay
	} else {
		res, err = s.execute(c, h, p.decline, p.latency-before)
		if err != nil {
			release()
			return Result{}, err
		}
		if owned {
			s.keys.settle(c.Key, res.Resource)
		}
	}
	if err := sleep(ctx, p.latency-before); err != nil {
		return res, fmt.Errorf("%w after settling: %w", ErrClientGone, err)
	}
	res.DropResponse = p.drop
	return res, nil
}

// execute settles c: a decline, or an execution recorded in the journal,
// whose reply is due answerIn later.
func (s *Simulator) execute(c Call, hash string, decline bool, answerIn time.Duration) (Result, error) {
	r := Record{
		API:         c.API,
		RequestHash: hash,
		Resource: Resource{
			IdempotencyKey: c.Key,
			UserID:         c.UserID,
			Amount:         c.Amount,
			Reference:      c.Reference,
			Status:         StatusSucceeded,
			CreatedAt:      s.now().UTC(),
		},
	}
	r.AnswerAt = r.CreatedAt.Add(answerIn)
	if decline {
		r.Status, r.Reason = StatusDeclined, "simulated_decline"
	}
	if err := s.journal.append(&r); err != nil {
		return Result{}, err
	}
	return Result{Resource: r.Resource, Executed: r.Status == StatusSucceeded}, nil
}

// Lookup returns the payment settled under key (GET /v2/payments/{key}).
// During an outage it fails like every other call; it is not rate limited.
func (s *Simulator) Lookup(key string) (Resource, error) {
	t := s.now()
	s.mu.Lock()
	until := s.outageUntil
	s.mu.Unlock()
	if t.Before(until) {
		return Resource{}, &OutageError{Until: until, Remaining: until.Sub(t)}
	}
	res, ok := s.keys.get(key, t)
	if !ok {
		return Resource{}, ErrNotFound
	}
	return res, nil
}

// Executions returns the executed payments matching f, in sequence order.
func (s *Simulator) Executions(f Filter) []Execution { return s.journal.list(f) }

// ExecutionCount returns how many payments were executed, reloaded ones included.
func (s *Simulator) ExecutionCount() int { return s.journal.count() }

// KeyCount returns how many idempotency keys are held.
func (s *Simulator) KeyCount() int { return s.keys.len() }

// ExpireKeys forgets every settled idempotency key at once, as 24 hours
// passing would (POST /sim/expire-keys), and returns how many it forgot.
// A call with such a key executes again: tests use it to show that the
// Finance Service's own guards, not the key, keep a payment from being paid
// twice. The execution record is kept. A restart with a data file brings
// back the keys its journal holds that are younger than the key TTL.
func (s *Simulator) ExpireKeys() int { return s.keys.expireAll() }

// RunSweeper forgets expired idempotency keys every interval until ctx ends.
func (s *Simulator) RunSweeper(ctx context.Context, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if n := s.keys.sweep(s.now()); n > 0 {
				s.logger.DebugContext(ctx, "expired idempotency keys dropped", "count", n)
			}
		}
	}
}

// sleep waits d or until ctx ends. It is not clock.Sleep on purpose: a zero
// latency returns nil even when ctx has ended, so a simulated call with no
// latency completes (executes) like a real processor that answered at once,
// rather than failing because its client already gave up.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
