package testkit

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/finsvc/finance/pkg/entry"
)

// Server is a binary's run function started by StartServer.
type Server struct {
	// Addr is the host:port of the first HTTP server the binary's log says
	// listens ("http server listening", as pkg/obs logs it).
	Addr string
	// Log holds the JSON log lines written before that line.
	Log []map[string]any
	// Stop cancels run's context and returns run's error. It waits for run
	// to return at most DefaultWait, and may be called more than once.
	Stop func() error
}

// StartServer runs run with args and env on its own goroutine, as main
// would, and returns once its log says it listens. It fails tb if run
// returns first, nothing listens within DefaultWait, or a line before the
// listening one is not JSON (every service logs JSON). The log after the
// listening line is drained so that the logger never blocks, and the server
// is stopped at the end of the test if the test did not stop it.
func StartServer(tb testing.TB, run entry.Run, args []string, env map[string]string) *Server {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := run(ctx, args, func(k string) string { return env[k] }, pw, pw)
		pw.Close()
		done <- err
	}()
	s := &Server{}
	var notJSON []string
	listening := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
		for s.Addr == "" && sc.Scan() {
			var rec map[string]any
			if json.Unmarshal(sc.Bytes(), &rec) != nil {
				notJSON = append(notJSON, sc.Text())
				continue
			}
			if rec["msg"] == "http server listening" {
				s.Addr, _ = rec["addr"].(string)
				break
			}
			s.Log = append(s.Log, rec)
		}
		close(listening)
		_, _ = io.Copy(io.Discard, pr)
	}()
	var once sync.Once
	var runErr error
	s.Stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(DefaultWait):
				tb.Errorf("run did not return %s after its context ended", DefaultWait)
			}
		})
		return runErr
	}
	tb.Cleanup(func() { _ = s.Stop() })
	select {
	case <-listening:
	case <-time.After(DefaultWait):
		tb.Fatalf("after %s: the server's log never said it listens", DefaultWait)
	}
	if len(notJSON) > 0 {
		tb.Fatalf("log lines that are not JSON: %q", notJSON)
	}
	if s.Addr == "" {
		tb.Fatalf("the server stopped before it listened: %v", s.Stop())
	}
	return s
}
