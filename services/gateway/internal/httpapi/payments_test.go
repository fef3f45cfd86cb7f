package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/finsvc/finance/pkg/kafka"
	"github.com/finsvc/finance/pkg/payment"
	financev1 "github.com/finsvc/finance/proto/finance/v1"
)

func TestCreatePayment(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.wallet(3456, 10000)
	tok := token(t, 3456, false)

	w := e.pay(tok, "order-1", 3456, 4593, -3000)
	if w.Code != http.StatusAccepted {
		t.Fatalf("status = %d, body %s", w.Code, w.Body.String())
	}
	got := decodeBody[paymentResp](t, w)
	uid, err := payment.ParseUID(got.UID)
	if err != nil || uid.Version() != 7 {
		t.Errorf("uid = %q (%v), want a UUIDv7", got.UID, err)
	}
	if loc := w.Header().Get("Location"); loc != "/v1/payments/"+got.UID {
		t.Errorf("Location = %q for payment %d, uid %s", loc, got.ID, got.UID)
	}
	created, err := time.Parse(time.RFC3339, got.CreatedAt)
	if err != nil || time.Since(created) > time.Minute {
		t.Errorf("created_at = %q (%v), want a recent RFC 3339 time", got.CreatedAt, err)
	}
	want := paymentResp{ID: got.ID, UID: got.UID, Status: "accepted", UserID: 3456, MerchantID: 4593, Amount: -3000,
		IdempotencyKey: "order-1", CreatedAt: got.CreatedAt, UpdatedAt: got.UpdatedAt,
		StatusURL: "/v1/payments/" + got.UID}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("payment (-want +got):\n%s", diff)
	}

	// The row, the hold, the audit row and the two outbox records, in one go.
	ctx := context.Background()
	var status string
	var hold, held, seq int64
	var createdAt time.Time
	var rowUID string
	if err := e.pool.QueryRow(ctx, `SELECT p.status, p.hold, p.created_at, w.held, w.event_seq, p.uid::text FROM payments p
		JOIN wallets w USING (user_id) WHERE p.id = $1`, got.ID).Scan(&status, &hold, &createdAt, &held, &seq, &rowUID); err != nil {
		t.Fatal(err)
	}
	if rowUID != got.UID {
		t.Errorf("payments.uid = %s, API uid %s", rowUID, got.UID)
	}
	if status != "accepted" || hold != 3000 || held != 3000 || seq != 1 {
		t.Errorf("status %s, hold %d, held %d, event_seq %d; want accepted, 3000, 3000, 1", status, hold, held, seq)
	}
	if n := e.count(`SELECT count(*) FROM payment_transitions WHERE payment_id = $1 AND from_status = ''
		AND to_status = 'accepted' AND actor = 'gateway' AND user_seq = 1`, got.ID); n != 1 {
		t.Errorf("transition rows = %d, want 1", n)
	}
	recs := outboxRecords(t, e)
	wantRecs := []outboxRecord{{Topic: kafka.TopicRequested, Key: "3456"}, {Topic: kafka.TopicEvents, Key: "3456"}}
	if diff := cmp.Diff(wantRecs, recs, cmpopts.IgnoreFields(outboxRecord{}, "Payload")); diff != "" {
		t.Fatalf("outbox records (-want +got):\n%s", diff)
	}
	var msg financev1.PaymentRequested
	if err := proto.Unmarshal(recs[0].Payload, &msg); err != nil {
		t.Fatalf("outbox payload: %v", err)
	}
	wantMsg := &financev1.PaymentRequested{PaymentId: got.ID, PaymentUid: got.UID, UserId: 3456, MerchantId: 4593, Amount: -3000,
		IdempotencyKey: "order-1", CreatedAt: timestamppb.New(createdAt)}
	if diff := cmp.Diff(wantMsg, &msg, protocmp.Transform()); diff != "" {
		t.Errorf("PaymentRequested (-want +got):\n%s", diff)
	}
	if msg.GetCreatedAt().AsTime().Unix() != created.Unix() {
		t.Errorf("PaymentRequested.created_at = %v, API created_at %v", msg.GetCreatedAt().AsTime(), created)
	}
	// The first transition is announced like every later one: balance and
	// held after the hold, the audit row's user_seq, the payment's creation.
	var ev financev1.PaymentEvent
	if err := proto.Unmarshal(recs[1].Payload, &ev); err != nil {
		t.Fatalf("outbox event payload: %v", err)
	}
	wantEv := &financev1.PaymentEvent{EventId: fmt.Sprintf("%d:accepted", got.ID), PaymentId: got.ID, PaymentUid: got.UID, UserId: 3456,
		MerchantId: 4593, Amount: -3000, Status: "accepted", Balance: 10000, Held: 3000, UserSeq: 1,
		OccurredAt: timestamppb.New(createdAt)}
	if diff := cmp.Diff(wantEv, &ev, protocmp.Transform()); diff != "" {
		t.Errorf("PaymentEvent (-want +got):\n%s", diff)
	}

	// A credit holds nothing.
	w = e.pay(tok, "top-up-1", 3456, 1, 5000)
	if w.Code != http.StatusAccepted {
		t.Fatalf("credit: status = %d, body %s", w.Code, w.Body.String())
	}
	if held := e.count(`SELECT held FROM wallets WHERE user_id = 3456`); held != 3000 {
		t.Errorf("held after credit = %d, want 3000", held)
	}
	credit := decodeBody[paymentResp](t, w)
	recs = outboxRecords(t, e)
	if len(recs) != 4 || recs[3].Topic != kafka.TopicEvents {
		t.Fatalf("outbox records after credit = %+v, want 4, the last on %s", recs, kafka.TopicEvents)
	}
	ev.Reset()
	if err := proto.Unmarshal(recs[3].Payload, &ev); err != nil {
		t.Fatalf("credit event payload: %v", err)
	}
	wantEv = &financev1.PaymentEvent{EventId: fmt.Sprintf("%d:accepted", credit.ID), PaymentId: credit.ID, PaymentUid: credit.UID, UserId: 3456,
		MerchantId: 1, Amount: 5000, Status: "accepted", Balance: 10000, Held: 3000, UserSeq: 2}
	if diff := cmp.Diff(wantEv, &ev, protocmp.Transform(), protocmp.IgnoreFields(&financev1.PaymentEvent{}, "occurred_at")); diff != "" {
		t.Errorf("credit PaymentEvent (-want +got):\n%s", diff)
	}

	// GET shows the current state, and the reason once failed; the
	// numeric id names the payment as the uid does.
	w = e.do(req{method: http.MethodGet, path: fmt.Sprintf("/v1/payments/%d", got.ID), token: tok})
	if p := decodeBody[paymentResp](t, w); w.Code != http.StatusOK || p.Status != "accepted" || p.UID != got.UID {
		t.Errorf("GET by numeric id: %d %+v", w.Code, p)
	}
	path := "/v1/payments/" + got.UID
	w = e.do(req{method: http.MethodGet, path: path, token: tok})
	if p := decodeBody[paymentResp](t, w); w.Code != http.StatusOK || p.Status != "accepted" || p.FailureReason != "" || p.ID != got.ID {
		t.Errorf("GET: %d %+v", w.Code, p)
	}
	e.exec(`UPDATE payments SET status = 'failed', hold = 0, failure_reason = 'declined: card blocked',
		updated_at = now() + interval '1 minute' WHERE id = $1`, got.ID)
	w = e.do(req{method: http.MethodGet, path: path, token: tok})
	p := decodeBody[paymentResp](t, w)
	if w.Code != http.StatusOK || p.Status != "failed" || p.FailureReason != "declined: card blocked" || p.UpdatedAt == p.CreatedAt {
		t.Errorf("GET after failure: %d %+v", w.Code, p)
	}
}

func TestCreatePaymentCharsetAllowed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.wallet(5, 100)
	w := e.do(req{method: http.MethodPost, path: "/v1/payments", token: token(t, 5, false),
		header: map[string]string{"Idempotency-Key": "k", "Content-Type": "application/json; charset=UTF-8"},
		body:   paymentBody(5, 1, -100)})
	if w.Code != http.StatusAccepted {
		t.Errorf("status = %d, body %s", w.Code, w.Body.String())
	}
}

func TestGetPayment(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.wallet(5, 100)
	e.wallet(6, 100)
	w := e.pay(token(t, 5, false), "k", 5, 1, -100)
	created := decodeBody[paymentResp](t, w)
	id := created.ID
	path := fmt.Sprintf("/v1/payments/%d", id)
	byUID := "/v1/payments/" + created.UID
	for _, tc := range []struct {
		name, path, token string
		status            int
		typ               string
	}{
		{"owner", path, token(t, 5, false), 200, ""},
		{"admin", path, token(t, 99, true), 200, ""},
		{"another user sees nothing", path, token(t, 6, false), 404, "not-found"},
		{"no such payment", "/v1/payments/99999999", token(t, 5, false), 404, "not-found"},
		{"id not a number", "/v1/payments/abc", token(t, 5, false), 400, "invalid-request"},
		{"owner, by uid", byUID, token(t, 5, false), 200, ""},
		{"another user sees nothing, by uid", byUID, token(t, 6, false), 404, "not-found"},
		{"no such uid", "/v1/payments/" + payment.NewUID().String(), token(t, 5, false), 404, "not-found"},
		{"uid malformed", "/v1/payments/0193a1b2-c3d4-7e5f-8a9b", token(t, 5, false), 400, "invalid-request"},
		{"nil uid", "/v1/payments/00000000-0000-0000-0000-000000000000", token(t, 5, false), 400, "invalid-request"},
		{"no token", path, "", 401, "unauthorized"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := e.do(req{method: http.MethodGet, path: tc.path, token: tc.token})
			if tc.typ != "" {
				wantProblem(t, w, tc.status, tc.typ)
				return
			}
			if p := decodeBody[paymentResp](t, w); w.Code != tc.status || p.ID != id {
				t.Errorf("status %d, payment %+v; want %d and payment %d", w.Code, p, tc.status, id)
			}
		})
	}
}

func TestIdempotentReplay(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.wallet(5, 10000)
	e.wallet(6, 10000)
	tok := token(t, 5, false)

	first := e.pay(tok, "key-1", 5, 1, -1000)
	if first.Code != http.StatusAccepted {
		t.Fatalf("first: %d %s", first.Code, first.Body.String())
	}
	orig := decodeBody[paymentResp](t, first)

	// Same key, same body: the same payment, still on its way: 202.
	again := e.pay(tok, "key-1", 5, 1, -1000)
	if got := decodeBody[paymentResp](t, again); again.Code != http.StatusAccepted || got.ID != orig.ID ||
		again.Header().Get("Idempotent-Replayed") != "true" || again.Header().Get("Location") != first.Header().Get("Location") {
		t.Errorf("replay: %d %+v headers %v", again.Code, got, again.Header())
	}
	// Same key, another body: refused, nothing written.
	wantProblem(t, e.pay(tok, "key-1", 5, 1, -2000), http.StatusUnprocessableEntity, "idempotency-key-reuse")
	wantProblem(t, e.pay(tok, "key-1", 5, 2, -1000), http.StatusUnprocessableEntity, "idempotency-key-reuse")

	// Keys belong to a user: another user's key-1 is another payment.
	if w := e.pay(token(t, 6, false), "key-1", 6, 1, -1000); w.Code != http.StatusAccepted ||
		decodeBody[paymentResp](t, w).ID == orig.ID || w.Header().Get("Idempotent-Replayed") != "" {
		t.Errorf("other user's key-1: %d %s", w.Code, w.Body.String())
	}

	if n := e.count(`SELECT count(*) FROM payments WHERE user_id = 5`); n != 1 {
		t.Errorf("payments of user 5 = %d, want 1", n)
	}
	if n := e.count(`SELECT count(*) FROM outbox WHERE key = '5'`); n != 2 {
		t.Errorf("outbox records of user 5 = %d, want 2 (one request, one event)", n)
	}
	if held := e.count(`SELECT held FROM wallets WHERE user_id = 5`); held != 1000 {
		t.Errorf("held = %d, want 1000 (held once)", held)
	}

	// Once final, a replay answers 200 with the outcome.
	e.exec(`UPDATE payments SET status = 'succeeded', hold = 0 WHERE id = $1`, orig.ID)
	final := e.pay(tok, "key-1", 5, 1, -1000)
	if got := decodeBody[paymentResp](t, final); final.Code != http.StatusOK || got.ID != orig.ID || got.Status != "succeeded" {
		t.Errorf("replay after success: %d %+v", final.Code, got)
	}
}

func TestConcurrentSameKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.wallet(5, 1_000_000)
	tok := token(t, 5, false)

	const n = 50
	ids := make([]int64, n)
	codes := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			w := e.pay(tok, "same-key", 5, 1, -700)
			codes[i] = w.Code
			if w.Code == http.StatusAccepted {
				ids[i] = decodeBody[paymentResp](t, w).ID
			}
		})
	}
	wg.Wait()
	for i := range n {
		if codes[i] != http.StatusAccepted || ids[i] != ids[0] {
			t.Errorf("request %d: status %d, payment %d; want 202 and payment %d", i, codes[i], ids[i], ids[0])
		}
	}
	if got := e.count(`SELECT count(*) FROM payments`); got != 1 {
		t.Errorf("payments = %d, want 1", got)
	}
	if got := e.count(`SELECT count(*) FROM outbox`); got != 2 {
		t.Errorf("outbox records = %d, want 2 (one request, one event)", got)
	}
	if got := e.count(`SELECT held FROM wallets WHERE user_id = 5`); got != 700 {
		t.Errorf("held = %d, want 700", got)
	}
}

func TestConcurrentDebitsNeverOverspend(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const balance, amount, n = 10_000, 300, 200
	e.wallet(5, balance)
	tok := token(t, 5, false)

	codes := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			w := e.pay(tok, fmt.Sprintf("debit-%d", i), 5, 2, -amount)
			codes[i] = w.Code
			if w.Code != http.StatusAccepted {
				wantProblem(t, w, http.StatusUnprocessableEntity, "insufficient-funds")
			}
		})
	}
	wg.Wait()
	accepted := 0
	for _, c := range codes {
		if c == http.StatusAccepted {
			accepted++
		}
	}
	// Holds are taken one after the other on the wallet row, so exactly as
	// many debits fit as the balance covers.
	if accepted*amount > balance || accepted != balance/amount {
		t.Errorf("accepted %d debits of %d on a balance of %d; want %d", accepted, amount, balance, balance/amount)
	}
	held := e.count(`SELECT held FROM wallets WHERE user_id = 5`)
	if held != int64(accepted*amount) || held > balance {
		t.Errorf("held = %d, want %d (and at most %d)", held, accepted*amount, balance)
	}
	for table, want := range map[string]int{"payments": accepted, "outbox": 2 * accepted, "payment_transitions": accepted} {
		if got := e.count(`SELECT count(*) FROM ` + table); got != int64(want) {
			t.Errorf("%s rows = %d, want %d", table, got, want)
		}
	}
	if got := e.count(`SELECT count(DISTINCT user_seq) FROM payment_transitions WHERE user_seq BETWEEN 1 AND $1`, accepted); got != int64(accepted) {
		t.Errorf("user_seq values 1..%d used = %d", accepted, got)
	}
}

func TestLegacyPayment(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.wallet(5, 10000)
	tok := token(t, 5, false)
	legacy := func(header map[string]string) paymentResp {
		t.Helper()
		w := e.do(req{method: http.MethodPost, path: "/payment", token: tok, body: paymentBody(5, 1, -100), header: header})
		if w.Code != http.StatusAccepted || !strings.HasPrefix(w.Header().Get("Location"), "/v1/payments/") {
			t.Fatalf("legacy POST: %d %s %v", w.Code, w.Body.String(), w.Header())
		}
		return decodeBody[paymentResp](t, w)
	}
	// Without a key each call is a new payment: as-is clients get no dedupe.
	a, b := legacy(nil), legacy(nil)
	if a.ID == b.ID || !strings.HasPrefix(a.IdempotencyKey, "legacy-") || a.IdempotencyKey == b.IdempotencyKey {
		t.Errorf("keyless legacy payments: %+v and %+v; want two payments with generated keys", a, b)
	}
	// With a key they dedupe like v1.
	c, d := legacy(map[string]string{"Idempotency-Key": "k"}), legacy(map[string]string{"Idempotency-Key": "k"})
	if c.ID != d.ID {
		t.Errorf("keyed legacy payments %d and %d, want one", c.ID, d.ID)
	}
	if n := e.count(`SELECT count(*) FROM outbox`); n != 6 {
		t.Errorf("outbox = %d, want 6 (3 payments, a request and an event each)", n)
	}
}

// Every answer of the as-is route names the payment's key, the generated
// one too, refusals included: an old client that got an ambiguous answer
// retries with it and gets the same payment, never a second one.
func TestLegacyPaymentAnswersItsKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.wallet(5, 1000)
	tok := token(t, 5, false)
	w := e.do(req{method: http.MethodPost, path: "/payment", token: tok, body: paymentBody(5, 1, -100)})
	key := w.Header().Get("Idempotency-Key")
	first := decodeBody[paymentResp](t, w)
	if w.Code != http.StatusAccepted || key == "" || key != first.IdempotencyKey {
		t.Fatalf("keyless legacy POST: %d, Idempotency-Key %q, payment key %q; want 202 and the generated key", w.Code, key, first.IdempotencyKey)
	}
	// The retry with the answered key is the same payment.
	w = e.do(req{method: http.MethodPost, path: "/payment", token: tok, body: paymentBody(5, 1, -100), header: map[string]string{"Idempotency-Key": key}})
	if again := decodeBody[paymentResp](t, w); again.ID != first.ID || w.Header().Get("Idempotent-Replayed") != "true" || w.Header().Get("Idempotency-Key") != key {
		t.Errorf("retry with the answered key: %d %+v %v; want payment %d replayed", w.Code, again, w.Header(), first.ID)
	}
	// A client's own key is answered as sent; a refusal answers it too.
	w = e.do(req{method: http.MethodPost, path: "/payment", token: tok, body: paymentBody(5, 1, -5000), header: map[string]string{"Idempotency-Key": "order-7"}})
	if w.Code != http.StatusUnprocessableEntity || w.Header().Get("Idempotency-Key") != "order-7" {
		t.Errorf("refused legacy POST: %d, Idempotency-Key %q; want 422 and order-7", w.Code, w.Header().Get("Idempotency-Key"))
	}
	if n := e.count(`SELECT count(*) FROM payments`); n != 1 {
		t.Errorf("%d payments, want 1", n)
	}
}

// TestOneInfoLinePerPayment: at info, an accepted payment gives one log
// line, its request's, which names the payment; a replay of it gives its
// request line only.
func TestOneInfoLinePerPayment(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	e := newEnvLogger(t, 0, slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo})))
	e.wallet(7, 10000)
	tok := token(t, 7, false)
	for range 2 { // the second is a replay
		if w := e.pay(tok, "one-line", 7, 2, -100); w.Code != http.StatusAccepted {
			t.Fatalf("pay: %d %s", w.Code, w.Body.String())
		}
	}
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if m["route"] == "/v1/payments" || m["payment_id"] != nil {
			lines = append(lines, m)
		}
	}
	if len(lines) != 2 {
		t.Fatalf("%d log lines about the payment's two requests, want 2 (one each):\n%s", len(lines), logs.String())
	}
	first, replay := lines[0], lines[1]
	if first["msg"] != "http request" || first["payment_accepted"] != true || first["payment_id"] == nil ||
		first["user_id"] != float64(7) || first["amount"] != float64(-100) {
		t.Errorf("the accepting request's line lacks the payment: %v", first)
	}
	if replay["payment_id"] != nil {
		t.Errorf("the replay's line names a payment it did not accept: %v", replay)
	}
}

// syncBuffer is a bytes.Buffer safe for the logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
