package testkit_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/finsvc/finance/pkg/testkit"
)

func TestEventually(t *testing.T) {
	t.Parallel()
	n := 0
	testkit.Eventually(t, "three calls", func() bool { n++; return n == 3 })
	if n != 3 {
		t.Errorf("cond called %d times, want 3", n)
	}
}

// fatalTB records a Fatalf instead of ending the test, to check that
// EventuallyWithin gives up.
type fatalTB struct {
	testing.TB
	failed string
}

func (f *fatalTB) Helper() {}
func (f *fatalTB) Fatalf(format string, args ...any) {
	f.failed = format
	panic(f)
}

func TestEventuallyGivesUp(t *testing.T) {
	t.Parallel()
	tb := &fatalTB{TB: t}
	func() {
		defer func() {
			if r := recover(); r != nil && r != any(tb) {
				panic(r)
			}
		}()
		testkit.EventuallyWithin(tb, 30*time.Millisecond, "never", func() bool { return false })
	}()
	if tb.failed == "" {
		t.Error("EventuallyWithin returned for a condition that never held")
	}
}

func TestStartServer(t *testing.T) {
	t.Parallel()
	run := func(ctx context.Context, args []string, getenv func(string) string, stdout, _ io.Writer) error {
		logger := slog.New(slog.NewJSONHandler(stdout, nil))
		logger.Info("starting", "greeting", getenv("GREETING"), "args", len(args))
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		defer ln.Close()
		logger.Info("http server listening", "addr", ln.Addr().String())
		<-ctx.Done()
		return errors.New("stopped as asked")
	}
	s := testkit.StartServer(t, run, []string{"serve"}, map[string]string{"GREETING": "hello"})
	if _, err := net.Dial("tcp", s.Addr); err != nil {
		t.Fatalf("dial %s: %v", s.Addr, err)
	}
	if len(s.Log) != 1 || s.Log[0]["greeting"] != "hello" || s.Log[0]["args"] != float64(1) {
		t.Errorf("Log = %v, want the one starting line with the env and args", s.Log)
	}
	if err := s.Stop(); err == nil || err.Error() != "stopped as asked" {
		t.Errorf("Stop = %v, want run's error", err)
	}
}
