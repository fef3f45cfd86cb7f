package clock_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/finsvc/finance/pkg/clock"
)

func TestSleep(t *testing.T) {
	t.Parallel()
	if err := clock.Sleep(context.Background(), time.Millisecond); err != nil {
		t.Errorf("Sleep: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := clock.Sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Errorf("Sleep on an ended context: %v, want context.Canceled", err)
	}
	if err := clock.Sleep(ctx, 0); !errors.Is(err, context.Canceled) {
		t.Errorf("Sleep(0) on an ended context: %v, want context.Canceled", err)
	}
}
