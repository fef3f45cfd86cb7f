// Package clock is the one home of waiting in production code: Sleep, a
// sleep that ends with its context, and Clock, the seam through which code
// that waits on time can be driven by a test.
package clock

import (
	"context"
	"time"
)

// Sleep waits d, or until ctx ends, and then returns ctx's error. A d of
// zero or less returns at once (with ctx's error, if it has ended).
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Clock tells the time and waits. Real is the production clock; tests pass
// their own to make time-based code deterministic.
type Clock interface {
	Now() time.Time
	// Sleep is the package's Sleep on this clock.
	Sleep(ctx context.Context, d time.Duration) error
}

// Real is the wall clock.
type Real struct{}

// Now returns time.Now().
func (Real) Now() time.Time { return time.Now() }

// Sleep is the package's Sleep.
func (Real) Sleep(ctx context.Context, d time.Duration) error { return Sleep(ctx, d) }
