package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/finsvc/finance/pkg/ledger"
	"github.com/finsvc/finance/pkg/payment"
	"github.com/finsvc/finance/pkg/problem"
	"github.com/finsvc/finance/services/gateway/internal/push"
	"github.com/finsvc/finance/services/gateway/internal/store"
)

// Push defaults, used when Config leaves them zero.
const (
	DefaultWaitMax   = 60 * time.Second
	DefaultHeartbeat = 15 * time.Second
)

const (
	// shutdownRetry is the reconnection delay a stream ended by a shutdown
	// suggests (SSE "retry:"), long enough for another instance to take it.
	shutdownRetry = 2 * time.Second
	// overloadedRetryAfter is the Retry-After of a refused long-poll or stream.
	overloadedRetryAfter = "5"
	// minDetachWait is the shortest long-poll taken out of net/http: a
	// shorter one is answered in its handler and keeps its connection alive,
	// which costs the client less than a new connection (docs/push.md).
	minDetachWait = time.Second
	// gapPage is how many transitions one PostgreSQL read of a gap takes.
	gapPage = 500
	// factsCache bounds a stream's cache of the payments it has shown.
	factsCache = 256

	typePushDisabled   = "push-disabled"
	typePushOverloaded = "push-overloaded"

	routeEvents  = "/v1/users/:user_id/events"
	routePayment = "/v1/payments/:id"
)

// The long-poll's response headers (README: "Long poll").
const (
	// headerWaitResult says why a long-poll answered: changed, timeout,
	// shutdown or unavailable (no KAFKA_BROKERS: it answered at once).
	headerWaitResult = "Wait-Result"
	// headerWaitClamped is set, to the wait applied, when the wait asked
	// for was above the maximum.
	headerWaitClamped = "Wait-Clamped"
)

// isPush reports the long-lived requests, which bound each of their reads
// themselves instead of the whole request (withTimeout skips them).
func isPush(c *gin.Context) bool {
	switch c.FullPath() {
	case routeEvents:
		return true
	case routePayment:
		_, ok := c.GetQuery("wait")
		return ok
	}
	return false
}

// unboundedWrites lifts the server's read and write deadlines from a
// long-lived response: the server's write timeout would cut a stream, and
// its read timeout would cancel the request's context once it passes.
// Recorders in tests support neither; that is fine.
func unboundedWrites(c *gin.Context) {
	rc := http.NewResponseController(c.Writer)
	_ = rc.SetWriteDeadline(time.Time{})
	_ = rc.SetReadDeadline(time.Time{})
}

func pushDisabled() error {
	return &apiError{http.StatusServiceUnavailable, typePushDisabled, "Push disabled",
		"this gateway runs without KAFKA_BROKERS, so it has no event stream; poll GET /v1/payments/{id}"}
}

func pushOverloaded(c *gin.Context) error {
	c.Header("Retry-After", overloadedRetryAfter)
	return &apiError{http.StatusServiceUnavailable, typePushOverloaded, "Too many open waits",
		"this gateway holds as many long-polls and streams as it may; retry after Retry-After seconds"}
}

// getPaymentOrWait is GET /v1/payments/{id}: with ?wait= a long-poll,
// without it getPayment as always.
func (a *api) getPaymentOrWait(c *gin.Context) error {
	raw, ok := c.GetQuery("wait")
	if !ok {
		return a.getPayment(c)
	}
	return a.longPoll(c, raw)
}

// lookupPayment reads the payment named by param, a uid or a numeric id,
// within the request timeout.
func (a *api) lookupPayment(ctx context.Context, param string) (store.Payment, error) {
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	if strings.Contains(param, "-") {
		uid, err := payment.ParseUID(param)
		if err != nil {
			return store.Payment{}, invalid("payment id: " + err.Error() + ", or a positive integer")
		}
		return a.store.PaymentByUID(ctx, uid)
	}
	id, err := parseID(param, "payment id")
	if err != nil {
		return store.Payment{}, err
	}
	return a.store.PaymentByID(ctx, id)
}

// parseWait reads ?wait=, a non-negative duration clamped to max.
func parseWait(raw string, max time.Duration) (wait time.Duration, clamped bool, err error) {
	wait, err = time.ParseDuration(raw)
	if err != nil || wait < 0 {
		return 0, false, invalid(fmt.Sprintf("wait %q: want a non-negative Go duration such as 30s (at most %s)", raw, max))
	}
	if wait > max {
		return max, true, nil
	}
	return wait, false, nil
}

// longPoll answers once the payment's status differs from the one it had
// when the request arrived, or when the wait ends, with the current state.
func (a *api) longPoll(c *gin.Context, raw string) error {
	wait, clamped, err := parseWait(raw, a.waitMax)
	if err != nil {
		return err
	}
	if clamped {
		c.Header(headerWaitClamped, a.waitMax.String())
	}
	ctx := c.Request.Context()
	arrived, err := a.lookupPayment(ctx, c.Param("id"))
	if err != nil {
		return err
	}
	if pr, _ := principal(c); !pr.CanActFor(arrived.UserID) {
		return fmt.Errorf("payment %d of another user: %w", arrived.ID, store.ErrPaymentNotFound)
	}
	if a.hub == nil {
		c.Header(headerWaitResult, "unavailable")
		writeJSON(c, http.StatusOK, toPaymentJSON(arrived))
		return nil
	}
	// Watch first, then read: a change between the read and the watch
	// would otherwise go unnoticed until the wait ends.
	w, ok := a.hub.Watch(arrived.ID)
	if !ok {
		return pushOverloaded(c)
	}
	parked := false
	defer func() {
		if !parked {
			w.Close()
		}
	}()
	idParam := strconv.FormatInt(arrived.ID, 10)
	cur, err := a.lookupPayment(ctx, idParam)
	if err != nil {
		return err
	}
	timer := time.NewTimer(wait)
	if cur.Status == arrived.Status && wait >= minDetachWait {
		// Park it out of net/http (push_conn.go): the goroutine answers.
		if d, ok := a.detach(c); ok {
			parked = true
			go a.answerDetached(context.WithoutCancel(ctx), d, c.Request.URL.Path, w, timer, arrived, cur, idParam)
			return nil
		}
	}
	defer timer.Stop()
	unboundedWrites(c)
	cur, result, err := a.awaitChange(ctx, w, timer.C, arrived, cur, idParam)
	if err != nil {
		if ctx.Err() != nil {
			return nil // the client left: nobody reads an answer, and it is no fault
		}
		return err
	}
	c.Header(headerWaitResult, result)
	c.Header("ETag", paymentETag(cur))
	writeJSON(c, http.StatusOK, toPaymentJSON(cur))
	return nil
}

// awaitChange waits until the payment's status differs from the one it had
// on arrival (cur is its state read after the watch), the wait ends, or
// the gateway drains, and returns the current state (re-read, so a late
// stale event never shows an older status) and why it answers.
func (a *api) awaitChange(ctx context.Context, w *push.Waiter, timeout <-chan time.Time,
	arrived, cur store.Payment, idParam string,
) (store.Payment, string, error) {
	for result := "changed"; ; {
		if cur.Status != arrived.Status || result != "changed" {
			return cur, result, nil
		}
		select {
		case <-w.Changed():
		case <-timeout:
			result = "timeout"
		case <-a.hub.Draining():
			result = "shutdown"
		case <-ctx.Done():
			return cur, "", ctx.Err()
		}
		var err error
		if cur, err = a.lookupPayment(ctx, idParam); err != nil {
			return cur, "", err
		}
	}
}

// answerDetached waits for a parked long-poll's answer and writes it on its
// connection, then closes it. A client that left is noticed only here, when
// the write fails: its slot is held until its wait ends.
func (a *api) answerDetached(ctx context.Context, d *detached, path string, w *push.Waiter, timer *time.Timer,
	arrived, cur store.Payment, idParam string,
) {
	defer d.Close()
	defer w.Close()
	defer timer.Stop()
	defer a.recoverDetached(ctx, path)
	cur, result, err := a.awaitChange(ctx, w, timer.C, arrived, cur, idParam)
	var body bytes.Buffer
	enc := json.NewEncoder(&body)
	enc.SetEscapeHTML(false)
	status := http.StatusOK
	if err != nil {
		p := problemFor(err)
		p.Instance = path
		if p.Status >= http.StatusInternalServerError {
			a.logger.ErrorContext(ctx, "push: long-poll failed", "path", path, "payment_id", arrived.ID, "err", err)
		}
		if p.RetryAfter > 0 {
			d.header.Set("Retry-After", strconv.Itoa(p.RetryAfter))
		}
		d.header.Set("Content-Type", problem.ContentType)
		status = p.Status
		_ = enc.Encode(p)
	} else {
		d.header.Set(headerWaitResult, result)
		d.header.Set("ETag", paymentETag(cur))
		d.header.Set("Content-Type", "application/json")
		_ = enc.Encode(toPaymentJSON(cur))
	}
	var out bytes.Buffer
	d.writeHead(&out, status, body.Len())
	out.Write(body.Bytes())
	_, _ = d.Write(out.Bytes()) // a failure means the client left; nothing to do
}

// recoverDetached keeps a panic in a detached connection's goroutine from
// taking the process down, as recoverPanics does for handlers.
func (a *api) recoverDetached(ctx context.Context, path string) {
	if r := recover(); r != nil {
		a.logger.ErrorContext(ctx, "push: panic on a detached connection", "path", path,
			"panic", fmt.Sprint(r), "stack", string(debug.Stack()))
	}
}

// eventJSON is one SSE event's data: the payment as GET /v1/payments/{id}
// shows it right after the change, and the change's user_seq.
type eventJSON struct {
	paymentJSON
	UserSeq int64 `json:"user_seq"`
}

// lastEventID reads the stream's resume point: the Last-Event-ID header,
// or the last_event_id parameter for clients that cannot set headers.
func lastEventID(c *gin.Context) (int64, bool, error) {
	raw, ok := c.Request.Header.Get("Last-Event-ID"), c.Request.Header.Get("Last-Event-ID") != ""
	name := "Last-Event-ID"
	if !ok {
		raw, ok = c.GetQuery("last_event_id")
		name = "last_event_id"
	}
	if !ok {
		return 0, false, nil
	}
	seq, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || seq < 0 {
		return 0, false, invalid(fmt.Sprintf("%s %q: want the id (user_seq) of the last event received, "+
			"a non-negative integer", name, raw))
	}
	return seq, true, nil
}

// streamEvents is GET /v1/users/{user_id}/events: the user's payment
// events as server-sent events, in user_seq order, each once.
func (a *api) streamEvents(c *gin.Context) error {
	userID, err := parseID(c.Param("user_id"), "user_id")
	if err != nil {
		return err
	}
	if p, _ := principal(c); !p.CanActFor(userID) {
		return forbidden(fmt.Sprintf("this token may only read the events of user %d", p.UserID))
	}
	last, resume, err := lastEventID(c)
	if err != nil {
		return err
	}
	if a.hub == nil {
		return pushDisabled()
	}
	// Subscribe, then read the user's latest user_seq: every change up to
	// it is in PostgreSQL, every later one reaches the subscription.
	sub, recent, ok := a.hub.Subscribe(userID)
	if !ok {
		return pushOverloaded(c)
	}
	parked := false
	defer func() {
		if !parked {
			sub.Close()
		}
	}()
	ctx := c.Request.Context()
	rctx, cancel := context.WithTimeout(ctx, a.timeout)
	latest, err := a.store.EventSeq(rctx, userID)
	cancel()
	if err != nil {
		return err
	}
	if !resume {
		last = latest
	} else if last > latest {
		return invalid(fmt.Sprintf("Last-Event-ID %d: user %d's latest event is %d", last, userID, latest))
	}

	s := &sseStream{a: a, userID: userID, last: last, facts: map[int64]store.PaymentFacts{}}
	// Park it out of net/http (push_conn.go): the goroutine streams.
	if d, ok := a.detach(c); ok {
		parked = true
		setStreamHeaders(d.header)
		var head bytes.Buffer
		d.writeHead(&head, http.StatusOK, -1) // the body ends when the connection closes
		s.out = d
		ctx, path := context.WithoutCancel(ctx), c.Request.URL.Path
		go func() {
			defer d.Close()
			defer sub.Close()
			defer a.recoverDetached(ctx, path)
			if err := s.write(head.Bytes()); err != nil {
				return // the client left
			}
			s.run(ctx, sub, recent, latest)
		}()
		return nil
	}
	unboundedWrites(c)
	setStreamHeaders(c.Writer.Header())
	c.Status(http.StatusOK)
	c.Writer.WriteHeaderNow()
	c.Writer.Flush()
	s.out = c.Writer
	s.run(ctx, sub, recent, latest)
	return nil
}

func setStreamHeaders(h http.Header) {
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
}

// run writes the events after s.last up to latest, then the stream's live
// events and heartbeats, until the client leaves (a failed write, or ctx
// while the stream is served by net/http), the hub drops it as too slow,
// or the gateway drains.
func (s *sseStream) run(ctx context.Context, sub *push.Stream, recent []ledger.Event, latest int64) {
	a := s.a
	if err := s.catchUp(ctx, recent, latest); err != nil {
		s.end(ctx, err)
		return
	}
	heartbeat := time.NewTicker(a.heartbeat)
	defer heartbeat.Stop()
	var err error
	for {
		select {
		case ev := <-sub.Events():
			err = s.deliver(ctx, *ev)
		case <-heartbeat.C:
			err = s.write([]byte(": heartbeat\n\n"))
		case <-sub.Dropped():
			a.logger.InfoContext(ctx, "push: slow stream dropped", "user_id", s.userID, "user_seq", s.last)
			return
		case <-a.hub.Draining():
			s.end(ctx, s.write([]byte("retry: "+strconv.FormatInt(shutdownRetry.Milliseconds(), 10)+
				"\n: the server is shutting down; reconnect with Last-Event-ID\n\n")))
			return
		case <-ctx.Done():
			return
		}
		if err != nil {
			s.end(ctx, err)
			return
		}
	}
}

// sseStream writes one client's events; last is the user_seq of the last
// event it wrote (or the starting point).
type sseStream struct {
	a      *api
	out    flushWriter
	userID int64
	last   int64
	facts  map[int64]store.PaymentFacts
	buf    bytes.Buffer
}

// flushWriter is where a stream writes: gin's writer, or a detached
// connection.
type flushWriter interface {
	io.Writer
	http.Flusher
}

// end logs why a stream ended early; the response has started, so there is
// no problem to answer.
func (s *sseStream) end(ctx context.Context, err error) {
	if err != nil && ctx.Err() == nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, syscall.EPIPE) &&
		!errors.Is(err, syscall.ECONNRESET) {
		s.a.logger.WarnContext(ctx, "push: stream ended", "user_id", s.userID, "user_seq", s.last, "err", err)
	}
}

// catchUp writes the events after s.last up to latest, from the hub's
// recent events when they hold every one of them, else from PostgreSQL.
func (s *sseStream) catchUp(ctx context.Context, recent []ledger.Event, latest int64) error {
	if s.last >= latest {
		return nil
	}
	var run []ledger.Event
	for _, ev := range recent {
		if ev.UserSeq > s.last && ev.UserSeq <= latest {
			run = append(run, ev)
		}
	}
	if int64(len(run)) == latest-s.last { // recent is sorted and unique by user_seq
		s.a.hub.Resumed(true)
		for _, ev := range run {
			if err := s.deliver(ctx, ev); err != nil {
				return err
			}
		}
		return nil
	}
	s.a.hub.Resumed(false)
	_, err := s.fill(ctx, latest)
	return err
}

// deliver writes ev unless it was written already, after the events before
// it that were not: a later event may arrive first (two producers feed the
// topic), but it is only numbered once every earlier one is committed.
func (s *sseStream) deliver(ctx context.Context, ev ledger.Event) error {
	if ev.UserSeq <= s.last {
		return nil
	}
	if ev.UserSeq > s.last+1 {
		n, err := s.fill(ctx, ev.UserSeq-1)
		s.a.hub.GapFilled(n)
		if err != nil {
			return err
		}
	}
	f, ok := s.facts[ev.PaymentID]
	if !ok {
		rctx, cancel := context.WithTimeout(ctx, s.a.timeout)
		got, err := s.a.store.PaymentFacts(rctx, []int64{ev.PaymentID})
		cancel()
		if err != nil {
			return err
		}
		if len(s.facts) >= factsCache {
			clear(s.facts)
		}
		f = got[ev.PaymentID]
		s.facts[ev.PaymentID] = f
	}
	return s.send(store.Transition{UserSeq: ev.UserSeq, Payment: store.Payment{
		ID: ev.PaymentID, UID: ev.PaymentUID, UserID: ev.UserID, MerchantID: ev.MerchantID, Amount: ev.Amount,
		Status: ev.Status, FailureReason: ev.Reason, IdempotencyKey: f.IdempotencyKey, CreatedAt: f.CreatedAt,
		UpdatedAt: ev.OccurredAt,
	}})
}

// fill writes the transitions after s.last up to upto from PostgreSQL and
// returns how many it wrote.
func (s *sseStream) fill(ctx context.Context, upto int64) (int, error) {
	n := 0
	for s.last < upto {
		rctx, cancel := context.WithTimeout(ctx, s.a.timeout)
		ts, err := s.a.store.Transitions(rctx, s.userID, s.last, upto, gapPage)
		cancel()
		if err != nil {
			return n, err
		}
		if len(ts) == 0 {
			// Numbers with no recorded change (none are expected): nothing to show.
			s.last = upto
			break
		}
		for _, t := range ts {
			if err := s.send(t); err != nil {
				return n, err
			}
			n++
		}
	}
	return n, nil
}

// send writes one event and flushes it.
func (s *sseStream) send(t store.Transition) error {
	s.buf.Reset()
	s.buf.WriteString("id: ")
	s.buf.WriteString(strconv.FormatInt(t.UserSeq, 10))
	s.buf.WriteString("\nevent: payment.")
	s.buf.WriteString(string(t.Payment.Status))
	s.buf.WriteString("\ndata: ")
	enc := json.NewEncoder(&s.buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(eventJSON{paymentJSON: toPaymentJSON(t.Payment), UserSeq: t.UserSeq}); err != nil {
		return fmt.Errorf("encode event %d: %w", t.UserSeq, err)
	}
	s.buf.WriteString("\n") // Encode ended the data line; this blank line ends the event
	if err := s.write(s.buf.Bytes()); err != nil {
		return err
	}
	s.last = t.UserSeq
	return nil
}

func (s *sseStream) write(b []byte) error {
	if _, err := s.out.Write(b); err != nil {
		return fmt.Errorf("write to client: %w", err)
	}
	s.out.Flush()
	return nil
}
