package processor

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/finsvc/finance/pkg/clock"
)

// Breaker stops calls to a processor that is down and probes for its
// recovery. While it is open no call is sent: callers wait, so a user's
// payments stay queued in order and nothing is failed because of an outage.
type Breaker struct {
	cb   *gobreaker.TwoStepCircuitBreaker[struct{}]
	poll time.Duration
	// firstFailure is when the current run of consecutive failures
	// began (unix nanoseconds), 0 after a success.
	firstFailure atomic.Int64
	failures     uint32
}

// BreakerConfig configures NewBreaker.
type BreakerConfig struct {
	// Failures is the number of consecutive outage-like answers (5xx,
	// timeouts, refused or lost connections) that opens the breaker.
	Failures int
	// OpenFor is how long the breaker stays open before one probe call.
	OpenFor time.Duration
	// MinSpan is how long the failures must have lasted; zero means 1s.
	// All calls in flight during a stall of this process (or of the
	// machine) time out together: that burst alone is no outage.
	MinSpan time.Duration
	// Metrics receives the state; nil records nothing.
	Metrics *Metrics
	// Logger receives state changes.
	Logger *slog.Logger
}

// NewBreaker returns a breaker that opens after cfg.Failures consecutive
// outage-like answers and lets one probe through after cfg.OpenFor.
func NewBreaker(cfg BreakerConfig) *Breaker {
	if cfg.Failures < 1 {
		cfg.Failures = 10
	}
	if cfg.OpenFor <= 0 {
		cfg.OpenFor = 2 * time.Second
	}
	if cfg.MinSpan <= 0 {
		cfg.MinSpan = time.Second
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	m := cfg.Metrics
	b := &Breaker{poll: min(cfg.OpenFor/10, 100*time.Millisecond), failures: uint32(cfg.Failures)}
	b.cb = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        "processor",
		MaxRequests: 1,
		Timeout:     cfg.OpenFor,
		IsExcluded:  func(err error) bool { return errors.Is(err, errNoVerdict) },
		ReadyToTrip: func(c gobreaker.Counts) bool {
			first := b.firstFailure.Load()
			return c.ConsecutiveFailures >= uint32(cfg.Failures) && first != 0 &&
				time.Since(time.Unix(0, first)) >= cfg.MinSpan
		},
		OnStateChange: func(_ string, from, to gobreaker.State) {
			m.breakerState.Set(float64(to))
			m.breakerTransitions.WithLabelValues(to.String()).Inc()
			level := slog.LevelWarn
			if to == gobreaker.StateClosed {
				level = slog.LevelInfo
			}
			cfg.Logger.Log(context.Background(), level, "processor circuit breaker", "from", from.String(), "to", to.String())
		},
	})
	return b
}

// errOutage marks a call that counts as a failure for the breaker;
// errNoVerdict one that counts as neither failure nor success.
var (
	errOutage    = errors.New("processor outage")
	errNoVerdict = errors.New("call says nothing about the processor")
)

// health is what one call says about the processor, for the breaker.
type health int

const (
	// healthOK: the processor answered.
	healthOK health = iota
	// healthOutage: unreachable, erroring or not answering.
	healthOutage
	// healthUnknown: the dispatcher cancelled the call itself; it neither
	// closes a half-open breaker nor counts towards opening one.
	healthUnknown
)

// wait blocks while the breaker is open.
func (b *Breaker) wait(ctx context.Context) error {
	if b == nil {
		return nil
	}
	for b.cb.State() == gobreaker.StateOpen {
		if err := clock.Sleep(ctx, b.poll); err != nil {
			return err
		}
	}
	return nil
}

// allow admits one call; ok is false when the breaker refuses it (open, or
// half-open with its probe already out), in which case nothing is sent.
// done reports the call's health.
func (b *Breaker) allow() (done func(health), ok bool) {
	if b == nil {
		return func(health) {}, true
	}
	d, err := b.cb.Allow()
	if err != nil {
		return nil, false
	}
	return func(h health) {
		switch h {
		case healthOutage:
			b.firstFailure.CompareAndSwap(0, time.Now().UnixNano())
			d(errOutage)
		case healthUnknown:
			d(errNoVerdict)
		default:
			b.firstFailure.Store(0)
			d(nil)
		}
	}, true
}

// down reports whether the processor looks down: the breaker is open, or
// enough consecutive failures were seen to open it once they last.
func (b *Breaker) down() bool {
	return b != nil && (b.cb.State() == gobreaker.StateOpen || b.cb.Counts().ConsecutiveFailures >= b.failures)
}
