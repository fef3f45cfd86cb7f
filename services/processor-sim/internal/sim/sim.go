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
	"slices"
	"strconv"
	"strings"
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
	// replying (SIM_LOST_RESPONSE_RATE); in a batch, the whole reply.
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

// MaxBatch is the most payment calls one batch may carry
// (POST /v2/payment-batches).
const MaxBatch = 100

// CheckBatch reports why calls with these idempotency keys cannot make one
// batch: more than MaxBatch of them, or one key twice, which would make the
// batch wait for itself. Empty keys (calls without one) are not compared.
func CheckBatch(keys []string) error {
	if len(keys) > MaxBatch {
		return fmt.Errorf("%d payments in one batch, at most %d", len(keys), MaxBatch)
	}
	seen := make(map[string]bool, len(keys))
	for _, k := range keys {
		if k == "" {
			continue
		}
		if seen[k] {
			return fmt.Errorf("idempotency key %q twice in one batch", k)
		}
		seen[k] = true
	}
	return nil
}

// ItemResult is what one call of a batch did: what Pay would have returned
// for that call alone.
type ItemResult struct {
	Result
	// Err refuses this call alone (a RateLimitError, ErrKeyReuse), or
	// repeats the error that ended the whole batch.
	Err error
}

// plan is the dice thrown for one batch of calls (Pay's call is a batch
// of one).
type plan struct {
	latency time.Duration
	fail    bool   // answer 500 without executing
	decline []bool // per call: decline instead of executing
	drop    bool   // close the connection instead of replying
}

// admit lets the calls of a batch in, or rejects them without executing:
// all of them during an outage (the error), or each call above the rate
// limit (its item's Err). If any call is in, it throws the dice: for the
// batch its latency, injected error and lost reply, for each call in a
// decline. For one call that is the order Pay has always drawn in, so a
// seed replays the same faults as before batches existed.
func (s *Simulator) admit(items []ItemResult) (plan, error) {
	t := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.outageAt(t); err != nil {
		return plan{}, err
	}
	in := 0
	for i := range items {
		if err := s.takeToken(t); err != nil {
			items[i].Err = err
			continue
		}
		in++
	}
	if in == 0 {
		return plan{}, nil
	}
	p := plan{
		latency: s.latency.sample(s.rng),
		fail:    s.rng.Float64() < s.settings.ErrorRate,
		decline: make([]bool, len(items)),
	}
	for i := range items {
		if items[i].Err == nil {
			p.decline[i] = s.rng.Float64() < s.settings.DeclineRate
		}
	}
	p.drop = s.rng.Float64() < s.settings.LostResponseRate
	return p, nil
}

// outageAt returns an OutageError when an outage is on at t. The caller
// holds s.mu.
func (s *Simulator) outageAt(t time.Time) error {
	if t.Before(s.outageUntil) {
		return &OutageError{Until: s.outageUntil, Remaining: s.outageUntil.Sub(t)}
	}
	return nil
}

// takeToken takes one token of the rate limiter at t, or returns a
// RateLimitError saying when there will be one. The caller holds s.mu.
func (s *Simulator) takeToken(t time.Time) error {
	r := s.limiter.ReserveN(t, 1)
	if !r.OK() {
		return &RateLimitError{RetryAfter: time.Second}
	}
	if d := r.DelayFrom(t); d > 0 {
		// Hand the token back: a rejected call must not slow the next ones.
		r.CancelAt(t)
		return &RateLimitError{RetryAfter: d}
	}
	return nil
}

// Pay handles one payment call. It is PayBatch with a batch of one, so that
// a call alone and a call in a batch go through the very same steps; see
// PayBatch for them.
func (s *Simulator) Pay(ctx context.Context, c Call) (Result, error) {
	items, err := s.PayBatch(ctx, []Call{c})
	if len(items) != 1 { // not for one call, which CheckBatch always accepts
		return Result{}, err
	}
	return items[0].Result, items[0].Err
}

// PayBatch handles several payment calls in one (POST /v2/payment-batches),
// each as it would be handled alone, and returns what each did, in the
// order of calls. The steps:
//
//  1. outage: the whole batch is rejected, nothing executed;
//  2. rate limit: each call takes a token; a call above the limit is
//     rejected alone (its item's RateLimitError), not executed, its key not
//     taken;
//  3. the idempotency keys are claimed for the whole batch. A known key is
//     a replay; a key of another request is that item's ErrKeyReuse; a key
//     in flight in another call makes the batch wait for that call (no
//     409). Keys are claimed in key order, whatever the order of calls:
//     two batches each holding a key the other waits for would wait until
//     their callers gave up. If no call is left to execute or replay, the
//     batch answers at once, as a single call refused by the limit or for
//     key reuse does;
//  4. the first half of the latency, the processor "working": a caller
//     leaving now executes nothing and frees the keys;
//  5. an injected error: the whole batch fails, nothing executed, the keys
//     freed;
//  6. execute (or decline) and record the executions, with one journal
//     write, under their keys;
//  7. the second half of the latency: a caller leaving now has executed but
//     sees no reply, like a real timeout;
//  8. maybe ask the transport to drop the reply: then every item that
//     settled or replayed says DropResponse.
//
// The dice are thrown once per batch as for one call (latency, injected
// error, lost reply) and once per call for a decline. An error returned
// ends the whole batch: an OutageError, ErrInjected, a failure to record,
// or ErrClientGone, after which the items executed in step 6 stay executed
// and say so. Every item not refused alone carries that error too, so that
// an item is always what Pay would have returned for its call. More than
// MaxBatch calls, or a key twice (CheckBatch), is refused before step 1,
// with no items.
func (s *Simulator) PayBatch(ctx context.Context, calls []Call) ([]ItemResult, error) {
	keys := make([]string, len(calls))
	for i, c := range calls {
		keys[i] = c.Key
	}
	if err := CheckBatch(keys); err != nil {
		return nil, err
	}
	items := make([]ItemResult, len(calls))
	p, err := s.admit(items)
	if err != nil {
		return items, failAll(items, err)
	}
	hashes := make([]string, len(calls))
	replays := make([]*Resource, len(calls))
	owned := make([]bool, len(calls)) // keys this batch holds and must settle or release
	release := func() {
		for i := range owned {
			if owned[i] {
				s.keys.release(calls[i].Key)
				owned[i] = false
			}
		}
	}
	running := 0
	for _, i := range keyOrder(calls) {
		if items[i].Err != nil {
			continue
		}
		hashes[i] = calls[i].hash()
		if calls[i].Key != "" {
			replays[i], err = s.keys.claim(ctx, calls[i].Key, hashes[i], s.now())
			switch {
			case errors.Is(err, ErrKeyReuse):
				items[i].Err = err
				continue
			case err != nil:
				release()
				return items, failAll(items, fmt.Errorf("%w waiting for the same key in flight: %w", ErrClientGone, err))
			}
			owned[i] = replays[i] == nil
		}
		running++
	}
	if running == 0 {
		return items, nil
	}
	before := p.latency / 2
	if err := sleep(ctx, before); err != nil {
		release()
		return items, failAll(items, fmt.Errorf("%w before execution: %w", ErrClientGone, err))
	}
	if p.fail {
		release()
		return items, failAll(items, ErrInjected)
	}
	t := s.now().UTC()
	var recs []*Record
	var at []int // recs[j] settles calls[at[j]]
	for i, c := range calls {
		if items[i].Err == nil && replays[i] == nil {
			recs = append(recs, record(c, hashes[i], p.decline[i], t, p.latency-before))
			at = append(at, i)
		}
	}
	if err := s.journal.append(recs...); err != nil {
		release()
		return items, failAll(items, err)
	}
	for j, r := range recs {
		i := at[j]
		items[i].Result = Result{Resource: r.Resource, Executed: r.Status == StatusSucceeded}
		if owned[i] {
			s.keys.settle(calls[i].Key, r.Resource)
			owned[i] = false
		}
	}
	for i, r := range replays {
		if r != nil {
			items[i].Result = Result{Resource: *r, Replayed: true}
		}
	}
	if err := sleep(ctx, p.latency-before); err != nil {
		return items, failAll(items, fmt.Errorf("%w after settling: %w", ErrClientGone, err))
	}
	for i := range items {
		if items[i].Err == nil {
			items[i].DropResponse = p.drop
		}
	}
	return items, nil
}

// failAll gives err to every item not already refused alone and returns
// it: the whole batch failed.
func failAll(items []ItemResult, err error) error {
	for i := range items {
		if items[i].Err == nil {
			items[i].Err = err
		}
	}
	return err
}

// keyOrder returns the indexes of calls sorted by idempotency key: the one
// order in which every batch claims its keys, so that no two batches each
// hold a key the other waits for.
func keyOrder(calls []Call) []int {
	order := make([]int, len(calls))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return strings.Compare(calls[a].Key, calls[b].Key) })
	return order
}

// record is the journal record settling c at t: an execution, or a decline.
// Its reply is due answerIn later.
func record(c Call, hash string, decline bool, t time.Time, answerIn time.Duration) *Record {
	r := &Record{
		API:         c.API,
		RequestHash: hash,
		AnswerAt:    t.Add(answerIn),
		Resource: Resource{
			IdempotencyKey: c.Key,
			UserID:         c.UserID,
			Amount:         c.Amount,
			Reference:      c.Reference,
			Status:         StatusSucceeded,
			CreatedAt:      t,
		},
	}
	if decline {
		r.Status, r.Reason = StatusDeclined, "simulated_decline"
	}
	return r
}

// Lookup returns the payment settled under key (GET /v2/payments/{key}).
// During an outage it fails like every other call; it is not rate limited.
func (s *Simulator) Lookup(key string) (Resource, error) {
	t := s.now()
	s.mu.Lock()
	err := s.outageAt(t)
	s.mu.Unlock()
	if err != nil {
		return Resource{}, err
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
