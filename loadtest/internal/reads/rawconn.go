package reads

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"time"
)

// rawConn is one keep-alive HTTP/1.1 connection of read-max, owned by the
// one goroutine of its closed loop: the request is written as bytes and
// the answer parsed by net/http's ReadResponse on the same goroutine.
// net/http's Transport hands every request between three goroutines (the
// caller's, the connection's writer and its reader) and a pool; a loop
// that owns its connection needs none of it. On one machine the
// generator's CPU per read is CPU the target does not get, so the cheaper
// client measures the target's throughput more truly, for either target
// (wrk, which the first measurement used, works the same way).
type rawConn struct {
	c       *client
	host    string // host:port to dial and to name in Host
	conn    net.Conn
	br      *bufio.Reader
	request []byte // reused for each request's bytes
}

func newRawConn(c *client) *rawConn {
	u, _ := url.Parse(c.base) // Validate checked it (plainHTTPHost)
	return &rawConn{c: c, host: u.Host}
}

// plainHTTPHost checks that raw is a plain http URL, all rawConn speaks.
func plainHTTPHost(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	if u.Scheme != "http" || u.Host == "" {
		return errors.New("read-max speaks plain HTTP/1.1: want http://host:port, got " + raw)
	}
	return nil
}

// read sends one read and returns "" or the class of its failure, as
// client.read does. A failed connection is closed and dialled again by the
// next read.
func (r *rawConn) read(ctx context.Context, user int64, balance bool) string {
	tok, err := r.c.token(user)
	if err != nil {
		return "token"
	}
	deadline := time.Now().Add(r.c.cfg.Timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if r.conn == nil {
		d := net.Dialer{Timeout: 5 * time.Second, Deadline: deadline}
		conn, err := d.DialContext(ctx, "tcp", r.host)
		if err != nil {
			return failureClass(err)
		}
		r.conn, r.br = conn, bufio.NewReaderSize(conn, 16<<10)
	}
	if err := r.conn.SetDeadline(deadline); err != nil {
		r.close()
		return "net_error"
	}
	b := append(r.request[:0], "GET "...)
	b = append(b, r.c.path(user, balance)...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, r.host...)
	b = append(b, "\r\nAuthorization: Bearer "...)
	b = append(b, tok...)
	b = append(b, "\r\nUser-Agent: finance-loadtest\r\n\r\n"...)
	r.request = b
	if _, err := r.conn.Write(b); err != nil {
		r.close()
		return failureClass(err)
	}
	resp, err := http.ReadResponse(r.br, nil)
	if err != nil {
		r.close()
		return failureClass(err)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || resp.Close {
		r.close()
	}
	if err != nil {
		return failureClass(err)
	}
	if resp.StatusCode/100 != 2 {
		return strconv.Itoa(resp.StatusCode)
	}
	return ""
}

func (r *rawConn) close() {
	if r.conn != nil {
		_ = r.conn.Close()
		r.conn, r.br = nil, nil
	}
}

// failureClass names a transport error as client.read does.
func failureClass(err error) string {
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
		return "timeout"
	}
	return "net_error"
}
