package obs

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/finsvc/finance/pkg/envconfig"
)

// serve runs ServeListener for h with hs on a free port until the test ends
// and returns its address.
func serve(t *testing.T, h http.Handler, hs envconfig.HTTPServer) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeListener(ctx, slog.New(slog.DiscardHandler), "test", ln, h, hs, time.Second) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeListener: %v", err)
		}
	})
	return ln.Addr().String()
}

// TestWriteTimeoutExemption: a response still being written when
// WriteTimeout passes is cut off, unless its handler lifted the deadline
// with http.ResponseController.SetWriteDeadline(time.Time{}), as the
// gateway's long-poll and server-sent events do.
func TestWriteTimeoutExemption(t *testing.T) {
	t.Parallel()
	const writeTimeout = 200 * time.Millisecond
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		if r.URL.Query().Has("exempt") {
			if err := rc.SetWriteDeadline(time.Time{}); err != nil {
				t.Errorf("SetWriteDeadline: %v", err)
			}
		}
		_, _ = io.WriteString(w, "first\n")
		_ = rc.Flush()
		// Stream on past the write deadline, as a long-poll waits.
		time.Sleep(3 * writeTimeout)
		_, _ = io.WriteString(w, "last\n")
		_ = rc.Flush()
	})
	addr := serve(t, h, envconfig.HTTPServer{WriteTimeout: writeTimeout})
	get := func(path string) (string, error) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	for _, tc := range []struct {
		path     string
		wantFull bool
	}{
		{"/stream?exempt", true},
		{"/stream", false},
	} {
		body, err := get(tc.path)
		full := err == nil && body == "first\nlast\n"
		if full != tc.wantFull {
			t.Errorf("GET %s: body %q, err %v; want the whole stream: %v", tc.path, body, err, tc.wantFull)
		}
		if !tc.wantFull && !strings.HasPrefix(body, "first\n") {
			t.Errorf("GET %s: body %q; the part before the deadline is lost too", tc.path, body)
		}
	}
}

// TestSlowlorisDisconnected: a client that sends its headers one byte at a
// time is disconnected once ReadHeaderTimeout has passed, long before it
// could finish, and the server goes on serving others.
func TestSlowlorisDisconnected(t *testing.T) {
	t.Parallel()
	hs := envconfig.HTTPServer{ReadHeaderTimeout: 200 * time.Millisecond, ReadTimeout: time.Minute}
	addr := serve(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}), hs)

	// 1,000 bytes at one per 20 ms would take 20 s: 100 times the timeout.
	headers := "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + strings.Repeat("a", 1000)
	sent, answer := trickle(t, addr, "", headers)
	if sent == len(headers) {
		t.Fatalf("the server read all %d bytes of a slowloris' headers without disconnecting it", sent)
	}
	// net/http may say why before it hangs up (400, Connection: close).
	if len(answer) != 0 && !strings.HasPrefix(string(answer), "HTTP/1.1 400 ") {
		t.Errorf("the server answered a request it never finished reading: %q", answer)
	}
	t.Logf("disconnected after %d of %d bytes, answer %q", sent, len(headers), answer)

	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatalf("a normal client after the slowloris: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("a normal client after the slowloris: %d", resp.StatusCode)
	}
}

// TestSlowBodyDisconnected: a client that sends its headers whole, then
// its body one byte at a time, is disconnected once ReadTimeout has passed
// since the request began: the handler's read of the body fails with a
// timeout long before the body could end, and the server goes on serving
// others.
func TestSlowBodyDisconnected(t *testing.T) {
	t.Parallel()
	hs := envconfig.HTTPServer{ReadHeaderTimeout: 100 * time.Millisecond, ReadTimeout: 300 * time.Millisecond}
	bodyRead := make(chan error, 1)
	addr := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			_, _ = io.WriteString(w, "ok")
			return
		}
		_, err := io.ReadAll(r.Body)
		bodyRead <- err
		if err != nil {
			http.Error(w, "the body did not arrive in time", http.StatusRequestTimeout)
		}
	}), hs)

	// 1,000 bytes at one per 20 ms would take 20 s: about 67 times the timeout.
	body := strings.Repeat("a", 1000)
	sent, answer := trickle(t, addr, "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"+
		"Content-Length: 1000\r\n\r\n", body)
	if sent == len(body) {
		t.Fatalf("the server read all %d bytes of a slow body without disconnecting the client", sent)
	}
	// The handler ran (the headers were whole) and its read timed out; it
	// sent its error before returning, so before the connection closed.
	var ne net.Error
	if err := <-bodyRead; !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("the handler's read of the slow body: %v, want a timeout", err)
	}
	if len(answer) != 0 && !strings.HasPrefix(string(answer), "HTTP/1.1 408 ") {
		t.Errorf("the server answered a request whose body it never finished reading: %q", answer)
	}
	t.Logf("disconnected after %d of %d body bytes, answer %q", sent, len(body), answer)

	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatalf("a normal client after the slow body: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("a normal client after the slow body: %d", resp.StatusCode)
	}
}

// TestHeaderReadLimit: the server reads at most HeaderReadLimit bytes of
// request line and headers and refuses more with 431 before any handler
// runs; a header block between MaxHeaderBytes and that reaches the handler,
// which may answer it in its own format (the gateway's problem+json).
func TestHeaderReadLimit(t *testing.T) {
	t.Parallel()
	hs := envconfig.HTTPServer{MaxHeaderBytes: 1 << 10}
	var reached bool
	addr := serve(t, http.HandlerFunc(func(http.ResponseWriter, *http.Request) { reached = true }), hs)
	for _, tc := range []struct {
		pad         int
		wantStatus  int
		wantReached bool
	}{
		{pad: 1500, wantStatus: http.StatusOK, wantReached: true},
		{pad: 20 << 10, wantStatus: http.StatusRequestHeaderFieldsTooLarge},
	} {
		reached = false
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
		req.Header.Set("X-Pad", strings.Repeat("a", tc.pad))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("pad %d: %v", tc.pad, err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.wantStatus || reached != tc.wantReached {
			t.Errorf("pad %d: status %d, handler reached %v; want %d, %v", tc.pad, resp.StatusCode, reached, tc.wantStatus, tc.wantReached)
		}
	}
}

// trickle connects to addr, writes head at once, then slow one byte every
// 20 ms until the server closes the connection or slow is all sent. It
// returns how many bytes of slow were sent and whatever the server wrote
// before closing.
func trickle(t *testing.T, addr, head, slow string) (sent int, answer []byte) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	gone := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(conn) // returns when the server closes the connection
		gone <- b
	}()
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatal(err)
	}
	for sent < len(slow) {
		select {
		case answer = <-gone:
			return sent, answer
		case <-time.After(20 * time.Millisecond):
		}
		if _, err := conn.Write([]byte{slow[sent]}); err != nil {
			return sent, <-gone
		}
		sent++
	}
	return sent, nil
}
