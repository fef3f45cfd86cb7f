package httpapi_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/finsvc/finance/pkg/obs"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/finsvc/finance/pkg/auth"
	"github.com/finsvc/finance/pkg/pgtest"
	"github.com/finsvc/finance/pkg/postgres"
	"github.com/finsvc/finance/pkg/problem"
	"github.com/finsvc/finance/services/gateway/internal/httpapi"
	"github.com/finsvc/finance/services/gateway/internal/store"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

var testSecret = []byte("gateway-test-secret-0123456789abcdef")

// env is one gateway over its own fresh database.
type env struct {
	t    testing.TB
	pool *pgxpool.Pool
	h    http.Handler
}

func newEnv(t testing.TB) *env {
	t.Helper()
	return newEnvTimeout(t, 0)
}

// newEnvTimeout is newEnv with a request timeout (0: the default).
func newEnvTimeout(t testing.TB, timeout time.Duration) *env {
	t.Helper()
	return newEnvLogger(t, timeout, slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})))
}

// newEnvLogger is newEnvTimeout with the gateway logging to logger.
func newEnvLogger(t testing.TB, timeout time.Duration, logger *slog.Logger) *env {
	t.Helper()
	ctx := context.Background()
	pool, err := postgres.Connect(ctx, pgtest.NewDB(t), 8)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(pool.Close)
	// Payments are accepted in batches, as the gateway does.
	st := store.New(pool)
	batchCtx, stop := context.WithCancel(context.Background())
	wait := st.StartBatching(batchCtx, store.BatchConfig{Workers: 2, MaxBatch: 32, Logger: logger})
	t.Cleanup(func() { stop(); wait() })
	h := checked(t, httpapi.New(httpapi.Config{
		Logger:   logger,
		Store:    st,
		Verifier: auth.NewVerifier(testSecret),
		Registry: obs.NewRegistry(),

		RequestTimeout: timeout,
	}))
	e := &env{t: t, pool: pool, h: h}
	e.exec(`INSERT INTO merchants (id, name) VALUES (1, 'Pleo'), (2, 'Apple'), (4593, 'Amazon')`)
	return e
}

func (e *env) exec(sql string, args ...any) {
	e.t.Helper()
	if _, err := e.pool.Exec(context.Background(), sql, args...); err != nil {
		e.t.Fatalf("exec %q: %v", sql, err)
	}
}

func (e *env) count(sql string, args ...any) int64 {
	e.t.Helper()
	var n int64
	if err := e.pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		e.t.Fatalf("query %q: %v", sql, err)
	}
	return n
}

// outboxRecord is one outbox row.
type outboxRecord struct {
	Topic, Key string
	Payload    []byte
}

// outboxRecords returns the outbox in the order the relay sends it.
func outboxRecords(t testing.TB, e *env) []outboxRecord {
	t.Helper()
	rows, _ := e.pool.Query(context.Background(), `SELECT topic, key, payload FROM outbox ORDER BY id`)
	recs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (outboxRecord, error) {
		var r outboxRecord
		var key []byte
		err := row.Scan(&r.Topic, &key, &r.Payload)
		r.Key = string(key)
		return r, err
	})
	if err != nil {
		t.Fatalf("read outbox: %v", err)
	}
	return recs
}

// wallet creates userID's wallet with balance.
func (e *env) wallet(userID, balance int64) {
	e.t.Helper()
	e.exec(`INSERT INTO wallets (user_id, balance) VALUES ($1, $2)`, userID, balance)
}

// entry adds a settled payment with id paymentID to userID's feed (the
// wallet's balance is the fixture's business, not updated here).
func (e *env) entry(userID, paymentID, merchantID, amount int64, occurred time.Time) {
	e.t.Helper()
	e.exec(`INSERT INTO payments (id, user_id, merchant_id, amount, status, idempotency_key, request_hash, source)
		VALUES ($1, $2, $3, $4, 'succeeded', $5, '', 'seed')`, paymentID, userID, merchantID, amount,
		"seed-"+strconv.FormatInt(paymentID, 10))
	e.exec(`INSERT INTO entries (user_id, payment_id, merchant_id, amount, occurred_at) VALUES ($1, $2, $3, $4, $5)`,
		userID, paymentID, merchantID, amount, occurred)
}

func token(t testing.TB, userID int64, admin bool) string {
	t.Helper()
	tok, err := auth.Mint(testSecret, userID, admin, time.Hour, time.Now())
	if err != nil {
		t.Fatalf("mint: %v", err)
	}
	return tok
}

// req is one HTTP request to the gateway.
type req struct {
	method, path, body string
	token              string            // bearer token; none when empty
	header             map[string]string // extra headers, set after the defaults
}

func (e *env) do(r req) *httptest.ResponseRecorder {
	e.t.Helper()
	var body io.Reader
	if r.body != "" {
		body = strings.NewReader(r.body)
	}
	hr := httptest.NewRequest(r.method, r.path, body)
	if r.body != "" {
		hr.Header.Set("Content-Type", "application/json")
	}
	if r.token != "" {
		hr.Header.Set("Authorization", "Bearer "+r.token)
	}
	for k, v := range r.header {
		if v == "" {
			hr.Header.Del(k)
			continue
		}
		hr.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, hr)
	return w
}

// pay posts a v1 payment as userID with key.
func (e *env) pay(tok, key string, userID, merchantID, amount int64) *httptest.ResponseRecorder {
	e.t.Helper()
	return e.do(req{
		method: http.MethodPost, path: "/v1/payments", token: tok,
		header: map[string]string{"Idempotency-Key": key},
		body:   paymentBody(userID, merchantID, amount),
	})
}

func paymentBody(userID, merchantID, amount int64) string {
	return `{"user_id":` + strconv.FormatInt(userID, 10) + `,"merchant_id":` + strconv.FormatInt(merchantID, 10) +
		`,"amount":` + strconv.FormatInt(amount, 10) + `}`
}

// paymentResp is the payment resource as clients decode it.
type paymentResp struct {
	ID             int64  `json:"id"`
	UID            string `json:"uid"`
	Status         string `json:"status"`
	UserID         int64  `json:"user_id"`
	MerchantID     int64  `json:"merchant_id"`
	Amount         int64  `json:"amount"`
	IdempotencyKey string `json:"idempotency_key"`
	FailureReason  string `json:"failure_reason"`
	CreatedAt      string `json:"created_at"`
	UpdatedAt      string `json:"updated_at"`
	StatusURL      string `json:"status_url"`
}

func decodeBody[T any](t testing.TB, w *httptest.ResponseRecorder) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil {
		t.Fatalf("decode %T from %q: %v", v, w.Body.String(), err)
	}
	return v
}

// wantProblem checks that w is a problem document of status and type typ
// with a detail, and returns it.
func wantProblem(t testing.TB, w *httptest.ResponseRecorder, status int, typ string) problem.Details {
	t.Helper()
	if w.Code != status {
		t.Fatalf("status = %d, want %d; body %s", w.Code, status, w.Body.String())
	}
	if ct := w.Header().Get("Content-Type"); ct != problem.ContentType {
		t.Errorf("Content-Type = %q, want %q", ct, problem.ContentType)
	}
	p := decodeBody[problem.Details](t, w)
	if p.Type != problem.TypeBase+typ || p.Status != status || p.Detail == "" || p.Title == "" {
		t.Errorf("problem = %+v, want type %q, status %d, a title and a detail", p, problem.TypeBase+typ, status)
	}
	return p
}
