package httpapi_test

import (
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/finsvc/finance/pkg/payment"
	"github.com/finsvc/finance/pkg/testkit"
)

// TestPushDetached: a parked long-poll and a stream are answered on their
// own connection, out of net/http (Connection: close, the headers the
// middleware set kept), and a stream whose client left is released at its
// next heartbeat, with nothing reading the connection.
func TestPushDetached(t *testing.T) {
	t.Parallel()
	e := setupPush(t, pushOpts{heartbeat: 20 * time.Millisecond})
	e.wallet(3456, 10_000)
	tok := token(t, 3456, false)
	p := e.payN(tok, 3456, 1, "dt-")[0]

	got := make(chan *http.Response, 1)
	go func() { got <- get(t, e.gw, "/v1/payments/"+p.UID+"?wait=30s", tok, nil) }()
	testkit.Eventually(t, "the long-poll waits", func() bool { return e.gw.hub.Open() == 1 })
	e.produce(e.advance(p.ID, payment.StatusProcessing, ""))
	resp := <-got
	if !resp.Close || resp.Header.Get("X-Request-Id") == "" || resp.Header.Get("ETag") == "" ||
		resp.Header.Get("Wait-Result") != "changed" {
		t.Errorf("long-poll answer: close %v, headers %v", resp.Close, resp.Header)
	}
	if got := readPayment(t, resp); got.Status != "processing" {
		t.Errorf("status %s, want processing", got.Status)
	}

	s := openStream(t, e.gw, 3456, tok, nil)
	if !s.resp.Close || s.resp.Header.Get("X-Request-Id") == "" {
		t.Errorf("stream: close %v, headers %v", s.resp.Close, s.resp.Header)
	}
	e.produce(e.advance(p.ID, payment.StatusSucceeded, ""))
	if ev, ok := s.next(); !ok || ev.Data.Status != "succeeded" {
		t.Errorf("event %+v (open %v), want succeeded", ev, ok)
	}
	_ = s.resp.Body.Close()
	testkit.Eventually(t, "the left stream is released", func() bool { return e.gw.hub.Open() == 0 })
	_, _ = io.Copy(io.Discard, s.resp.Body)
}
