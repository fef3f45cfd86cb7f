// Package obs sets up what every process shares for operations: the JSON
// logger and the small ops HTTP server with /healthz, /readyz and /metrics.
package obs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/finsvc/finance/pkg/envconfig"
)

// NewLogger returns a JSON logger writing to w at level ("debug", "info",
// "warn", "error"), tagged with the service name. Its level can be changed
// while the process runs (LevelOf; WithLogLevel serves it on the ops port).
// A line logged with a context that holds a span (InfoContext, LogAttrs)
// carries the span's trace_id and span_id.
func NewLogger(w io.Writer, level, service string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(level))); err != nil {
		return nil, fmt.Errorf("log level %q: want %s", level, envconfig.LogLevels)
	}
	lv := new(slog.LevelVar)
	lv.Set(l)
	h := levelHandler{Handler: traceHandler{slog.NewJSONHandler(w, &slog.HandlerOptions{Level: lv})}, level: lv}
	return slog.New(h).With("service", service), nil
}

// Start is how every service begins: its JSON logger at ops.LogLevel, then
// one "starting" line with cfg, the effective configuration (a LogValuer
// that masks secrets), and one warning per deprecated setting name in use.
func Start(ctx context.Context, w io.Writer, service string, ops envconfig.Ops, cfg slog.LogValuer) (*slog.Logger, error) {
	logger, err := NewLogger(w, ops.LogLevel, service)
	if err != nil {
		return nil, err
	}
	logger.InfoContext(ctx, "starting", "config", cfg)
	for _, msg := range ops.Deprecated {
		logger.WarnContext(ctx, msg)
	}
	return logger, nil
}

// NewRegistry returns a Prometheus registry with the Go and process collectors.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// ReadyFunc reports whether the process can do its work; nil means ready.
type ReadyFunc func(ctx context.Context) error

// OpsMux returns a mux with /healthz (the process is alive), /readyz (ready
// runs its checks), /metrics (reg) and /debug/pprof/ (see PprofRoutes), and
// the routes opts add (WithLogLevel: /loglevel).
func OpsMux(reg *prometheus.Registry, ready ReadyFunc, opts ...OpsOption) *http.ServeMux {
	mux := http.NewServeMux()
	for _, o := range opts {
		o(mux)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		w.Header().Set("Content-Type", "text/plain")
		if ready != nil {
			if err := ready(ctx); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = io.WriteString(w, "not ready: "+err.Error()+"\n")
				return
			}
		}
		_, _ = io.WriteString(w, "ready\n")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	PprofRoutes(mux)
	return mux
}

// PprofRoutes adds net/http/pprof's handlers under GET /debug/pprof/ to mux
// (a CPU profile: /debug/pprof/profile?seconds=30). They are registered by
// hand because importing net/http/pprof for its side effect would put them
// on http.DefaultServeMux, which nothing here serves. The ops port listens
// on loopback or inside the cluster only, as /metrics does.
func PprofRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
}

// Serve runs an HTTP server for h on addr until ctx ends, then shuts it down
// within grace. It returns once the server has stopped. hs sets the server's
// timeouts and header cap (envconfig.Ops.HTTP, the HTTP_* settings).
func Serve(ctx context.Context, logger *slog.Logger, name, addr string, h http.Handler, hs envconfig.HTTPServer, grace time.Duration) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%s: listen %s: %w", name, addr, err)
	}
	return ServeListener(ctx, logger, name, ln, h, hs, grace)
}

// ServeListener is Serve on an existing listener.
//
// Every server the project runs is made here, so every one has the four
// timeouts of hs. WriteTimeout cuts off any response still being written
// when it passes, streams included. A handler that streams on purpose for
// longer (long-poll, server-sent events) calls
// http.NewResponseController(w).SetWriteDeadline(time.Time{}) before it
// waits, which lifts the deadline for that response only (the server sets
// it again for the connection's next request). Such a handler bounds its
// own wait, and ends on r.Context() (the client left) and on the service's
// shutdown, which Shutdown does not signal to running handlers.
// TestWriteTimeoutExemption shows both cases.
func ServeListener(ctx context.Context, logger *slog.Logger, name string, ln net.Listener, h http.Handler, hs envconfig.HTTPServer, grace time.Duration) error {
	srv := NewServer(h, hs)
	logger.Info("http server listening", "server", name, "addr", ln.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("%s: serve: %w", name, err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("%s: shutdown: %w", name, err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("%s: serve: %w", name, err)
	}
	return nil
}

// NewServer returns an http.Server for h with hs's timeouts and header read
// limit (hs.HeaderReadLimit; a larger request line and headers get net/http's
// plain 431 before any handler runs). Zero fields of hs take
// envconfig.DefaultHTTPServer's values.
func NewServer(h http.Handler, hs envconfig.HTTPServer) *http.Server {
	d := envconfig.DefaultHTTPServer
	if hs.ReadHeaderTimeout <= 0 {
		hs.ReadHeaderTimeout = d.ReadHeaderTimeout
	}
	if hs.ReadTimeout <= 0 {
		hs.ReadTimeout = d.ReadTimeout
	}
	if hs.WriteTimeout <= 0 {
		hs.WriteTimeout = d.WriteTimeout
	}
	if hs.IdleTimeout <= 0 {
		hs.IdleTimeout = d.IdleTimeout
	}
	if hs.MaxHeaderBytes <= 0 {
		hs.MaxHeaderBytes = d.MaxHeaderBytes
	}
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: hs.ReadHeaderTimeout,
		ReadTimeout:       hs.ReadTimeout,
		WriteTimeout:      hs.WriteTimeout,
		IdleTimeout:       hs.IdleTimeout,
		MaxHeaderBytes:    hs.HeaderReadLimit(),
	}
}

// QuietKafka returns the logger for franz-go clients: at warn and above unless
// level is "debug", or the level was set to debug at runtime (PUT
// /loglevel), since at info franz-go logs every transaction it begins and
// ends and every group rebalance step.
func QuietKafka(logger *slog.Logger, level string) *slog.Logger {
	if level == "debug" {
		return logger
	}
	return slog.New(minLevel{Handler: logger.Handler(), min: slog.LevelWarn, follow: LevelOf(logger)})
}

// minLevel drops records below min, whatever its handler's own level,
// unless follow (the process's level, when known) is at debug.
type minLevel struct {
	slog.Handler
	min    slog.Level
	follow *slog.LevelVar
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	debug := h.follow != nil && h.follow.Level() <= slog.LevelDebug
	return (l >= h.min || debug) && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(attrs []slog.Attr) slog.Handler {
	return minLevel{Handler: h.Handler.WithAttrs(attrs), min: h.min, follow: h.follow}
}

func (h minLevel) WithGroup(name string) slog.Handler {
	return minLevel{Handler: h.Handler.WithGroup(name), min: h.min, follow: h.follow}
}
