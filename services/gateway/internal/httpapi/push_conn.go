package httpapi

import (
	"bytes"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
)

// A parked long-poll or stream leaves net/http once its wait is set up
// (docs/push.md, "Memory with 10,000 open connections"): the handler hijacks
// the connection, net/http's serve goroutine, its background reader and its
// buffers (4 KiB read, 4 KiB write, 2 KiB response) are released, and one
// goroutine that starts small writes the answer, the events and the
// heartbeats itself. The answer always carries Connection: close and the
// connection is closed after it: a hijacked connection cannot go back to
// net/http's keep-alive loop. TLS is terminated by the proxy in front
// (plain HTTP/1.1 here); an HTTP/2 request cannot be hijacked and is served
// in its handler as before.

// detached is a connection taken out of net/http, with the headers the
// middleware set (X-Request-Id, RateLimit-*) for its answer.
type detached struct {
	conn     net.Conn
	header   http.Header
	timeout  time.Duration // bounds each write
	deadline time.Time     // the write deadline set on conn
}

// detach hijacks c's connection; ok is false when the connection cannot be
// hijacked (HTTP/2, a test recorder), and the caller serves it in net/http.
// Bytes a client pipelined after the request are dropped with the buffers:
// the connection closes after the answer.
func (a *api) detach(c *gin.Context) (*detached, bool) {
	if c.Request.ProtoMajor != 1 {
		return nil, false
	}
	// gin's writer hijacks by asserting what it wraps; ask first.
	if u, ok := c.Writer.(interface{ Unwrap() http.ResponseWriter }); !ok {
		return nil, false
	} else if _, ok := u.Unwrap().(http.Hijacker); !ok {
		return nil, false
	}
	header := c.Writer.Header().Clone()
	conn, _, err := c.Writer.Hijack()
	if err != nil {
		return nil, false
	}
	return &detached{conn: conn, header: header, timeout: a.timeout}, true
}

// writeHead writes the status line and headers of an answer whose body
// ends when the connection closes (a stream) or has contentLength bytes.
func (d *detached) writeHead(buf *bytes.Buffer, status int, contentLength int) {
	buf.WriteString("HTTP/1.1 ")
	buf.WriteString(strconv.Itoa(status))
	buf.WriteByte(' ')
	buf.WriteString(http.StatusText(status))
	buf.WriteString("\r\n")
	d.header.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	d.header.Set("Connection", "close")
	if contentLength >= 0 {
		d.header.Set("Content-Length", strconv.Itoa(contentLength))
	}
	_ = d.header.Write(buf) // a bytes.Buffer does not fail
	buf.WriteString("\r\n")
}

// Write writes b within the write timeout: a client that takes nothing for
// that long is gone or stuck, and the connection is given up. The deadline
// is moved only once half of it is used (each write gets at least half the
// timeout): moving it costs a timer update per event.
func (d *detached) Write(b []byte) (int, error) {
	if now := time.Now(); d.deadline.Sub(now) < d.timeout/2 {
		d.deadline = now.Add(d.timeout)
		_ = d.conn.SetWriteDeadline(d.deadline)
	}
	return d.conn.Write(b)
}

// Flush is a no-op: every Write goes to the socket.
func (d *detached) Flush() {}

func (d *detached) Close() { _ = d.conn.Close() }
