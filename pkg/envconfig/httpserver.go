package envconfig

import (
	"log/slog"
	"time"
)

// HTTPServer is the hygiene of every HTTP server the project runs (the
// gateway's API, the simulator, the as-is service, every ops port), read once
// by LoadOps and applied by obs.Serve.
//
// WriteTimeout also bounds a response that streams: a handler that streams
// longer on purpose (the gateway's long-poll and server-sent events) lifts
// the deadline for its own connection with
// http.NewResponseController(w).SetWriteDeadline(time.Time{}) before it
// waits; every other response is cut off at WriteTimeout.
type HTTPServer struct {
	// ReadHeaderTimeout (HTTP_READ_HEADER_TIMEOUT) is how long a client may
	// take to send the request line and headers: a slowloris client that
	// dribbles them is disconnected when it passes.
	ReadHeaderTimeout time.Duration
	// ReadTimeout (HTTP_READ_TIMEOUT) bounds reading the whole request,
	// body included.
	ReadTimeout time.Duration
	// WriteTimeout (HTTP_WRITE_TIMEOUT) bounds the time from the end of the
	// request's headers to the end of the response. It must exceed the
	// longest request a service serves (the gateway's admin replays,
	// GATEWAY_ADMIN_TIMEOUT; a 30 s CPU profile on an ops port).
	WriteTimeout time.Duration
	// IdleTimeout (HTTP_IDLE_TIMEOUT) closes keep-alive connections that
	// send nothing for this long.
	IdleTimeout time.Duration
	// MaxHeaderBytes (HTTP_MAX_HEADER_BYTES) is the largest request line
	// plus headers a service accepts. The gateway answers a larger one
	// 431 problem+json; the server itself stops reading at
	// HeaderReadLimit (twice this) and answers net/http's plain 431.
	MaxHeaderBytes int
}

// DefaultHTTPServer is the hygiene every server gets unless the environment
// says otherwise.
var DefaultHTTPServer = HTTPServer{
	ReadHeaderTimeout: 5 * time.Second,
	ReadTimeout:       30 * time.Second,
	WriteTimeout:      90 * time.Second,
	IdleTimeout:       120 * time.Second,
	MaxHeaderBytes:    16 << 10,
}

// HeaderReadLimit is what the server reads of a request's line and headers
// at most (http.Server.MaxHeaderBytes): twice MaxHeaderBytes, so that a
// handler can still answer a header block just over MaxHeaderBytes in its
// own format.
func (h HTTPServer) HeaderReadLimit() int { return 2 * h.MaxHeaderBytes }

// LoadHTTPServer reads the HTTP_* server settings, with DefaultHTTPServer's
// values as defaults. LoadOps calls it; so does a program without Ops that
// runs a server (financectl reconcile's metrics port).
func LoadHTTPServer(r *Reader) HTTPServer {
	d := DefaultHTTPServer
	h := HTTPServer{
		ReadHeaderTimeout: r.PositiveDuration("HTTP_READ_HEADER_TIMEOUT", d.ReadHeaderTimeout),
		ReadTimeout:       r.PositiveDuration("HTTP_READ_TIMEOUT", d.ReadTimeout),
		WriteTimeout:      r.PositiveDuration("HTTP_WRITE_TIMEOUT", d.WriteTimeout),
		IdleTimeout:       r.PositiveDuration("HTTP_IDLE_TIMEOUT", d.IdleTimeout),
		MaxHeaderBytes:    r.IntIn("HTTP_MAX_HEADER_BYTES", d.MaxHeaderBytes, 1<<10, 1<<20),
	}
	if h.ReadHeaderTimeout > h.ReadTimeout {
		r.Fail("HTTP_READ_HEADER_TIMEOUT=%s: must not exceed HTTP_READ_TIMEOUT=%s", h.ReadHeaderTimeout, h.ReadTimeout)
	}
	return h
}

// LogValue logs the settings.
func (h HTTPServer) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("read_header_timeout", h.ReadHeaderTimeout.String()),
		slog.String("read_timeout", h.ReadTimeout.String()),
		slog.String("write_timeout", h.WriteTimeout.String()),
		slog.String("idle_timeout", h.IdleTimeout.String()),
		slog.Int("max_header_bytes", h.MaxHeaderBytes),
	)
}
