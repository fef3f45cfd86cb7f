// Package fakes holds the load generator's test doubles at its real seams,
// both over real HTTP: a processor simulator (its /sim routes) and a target
// speaking the as-is or the pipeline API.
package fakes

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/finsvc/finance/pkg/payment"
	"github.com/finsvc/finance/pkg/pgtest"
	"github.com/finsvc/finance/pkg/simclient"
)

// Sim is a processor simulator's control API over an in-memory record.
type Sim struct {
	URL   string
	Limit float64

	mu      sync.Mutex
	execs   []simclient.Execution
	calls   int64
	outages []time.Duration
	until   time.Time
}

// NewSim starts a fake simulator, stopped when tb ends.
func NewSim(tb testing.TB) *Sim {
	tb.Helper()
	s := &Sim{Limit: 300}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /sim/config", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, 200, simclient.Settings{API: "proposed", RateLimit: s.Limit, LatencyP50: "0s", LatencyP99: "0s"})
	})
	mux.HandleFunc("GET /sim/stats", func(w http.ResponseWriter, _ *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		st := simclient.Stats{Calls: s.calls, Executed: int64(len(s.execs)), ExecutionsRecorded: int64(len(s.execs))}
		if time.Now().Before(s.until) {
			u := s.until
			st.OutageUntil = &u
		}
		writeJSON(w, 200, st)
	})
	mux.HandleFunc("GET /sim/executions", func(w http.ResponseWriter, _ *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		writeJSON(w, 200, map[string]any{"count": len(s.execs), "executions": s.execs})
	})
	mux.HandleFunc("POST /sim/outage", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Duration string `json:"duration"`
		}
		_ = json.NewDecoder(r.Body).Decode(&req)
		d, err := time.ParseDuration(req.Duration)
		if err != nil {
			writeJSON(w, 400, map[string]string{"error": err.Error()})
			return
		}
		s.mu.Lock()
		s.outages = append(s.outages, d)
		s.until = time.Now().Add(d)
		s.mu.Unlock()
		writeJSON(w, 200, map[string]any{"active": true})
	})
	srv := httptest.NewServer(mux)
	tb.Cleanup(srv.Close)
	s.URL = srv.URL
	return s
}

// Execute records an execution of amount for user under key.
func (s *Sim) Execute(user, amount int64, key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	n := int64(len(s.execs)) + 1
	s.execs = append(s.execs, simclient.Execution{Seq: n, ID: "ref-" + strconv.FormatInt(n, 10),
		IdempotencyKey: key, UserID: user, Amount: amount, ExecutedAt: time.Now()})
}

// Outages returns the outages asked for.
func (s *Sim) Outages() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.outages...)
}

// Payment is a payment request a Target received.
type Payment struct {
	UserID, MerchantID, Amount int64
	Key, Auth                  string
}

// Target answers the as-is routes (POST /payment, GET /payment_feed) and
// the pipeline's (POST /v1/payments, GET /v1/users/{id}/feed).
type Target struct {
	URL string
	// Pay decides a payment's answer; nil executes it on the Sim and
	// answers 201 (as-is) or 202 (pipeline).
	Pay func(p Payment) (code int, body string)

	sim      *Sim
	mu       sync.Mutex
	payments []Payment
	feeds    int
}

// NewTarget starts a fake target executing on sim, stopped when tb ends.
func NewTarget(tb testing.TB, sim *Sim) *Target {
	tb.Helper()
	t := &Target{sim: sim}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ready\n")) })
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	pay := func(pipeline bool) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			var p Payment
			var body struct {
				UserID     int64 `json:"user_id"`
				MerchantID int64 `json:"merchant_id"`
				Amount     int64 `json:"amount"`
			}
			if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
				writeJSON(w, 400, map[string]string{"detail": err.Error()})
				return
			}
			p = Payment{UserID: body.UserID, MerchantID: body.MerchantID, Amount: body.Amount,
				Key: r.Header.Get("Idempotency-Key"), Auth: r.Header.Get("Authorization")}
			t.mu.Lock()
			t.payments = append(t.payments, p)
			id := len(t.payments)
			t.mu.Unlock()
			if t.Pay != nil {
				code, b := t.Pay(p)
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(code)
				_, _ = w.Write([]byte(b))
				return
			}
			if pipeline {
				t.sim.Execute(p.UserID, p.Amount, payment.ProcessorKey(payment.NewUID()))
				writeJSON(w, 202, map[string]any{"id": id, "status": "accepted"})
				return
			}
			t.sim.Execute(p.UserID, p.Amount, "")
			writeJSON(w, 201, map[string]any{"id": id, "status": "succeeded"})
		}
	}
	feed := func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") {
			writeJSON(w, 401, map[string]string{"detail": "no token"})
			return
		}
		t.mu.Lock()
		t.feeds++
		t.mu.Unlock()
		writeJSON(w, 200, map[string]any{"user_id": 1, "balance": 100000, "transactions": []any{}})
	}
	mux.HandleFunc("POST /payment", pay(false))
	mux.HandleFunc("POST /v1/payments", pay(true))
	mux.HandleFunc("GET /payment_feed", feed)
	mux.HandleFunc("GET /v1/users/{id}/feed", feed)
	srv := httptest.NewServer(mux)
	tb.Cleanup(srv.Close)
	t.URL = srv.URL
	return t
}

// Payments returns the payments received.
func (t *Target) Payments() []Payment {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]Payment(nil), t.payments...)
}

// Feeds returns how many feeds were read.
func (t *Target) Feeds() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.feeds
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// LegacyDB creates an empty database on pgtest's server holding the as-is
// payments table, with users first..first+users-1 seeded with 100000 each,
// dropped when tb ends. It returns the database's URL and a pool.
func LegacyDB(tb testing.TB, first int64, users int) (string, *pgxpool.Pool) {
	tb.Helper()
	ctx := context.Background()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "loadtest_legacy_" + hex.EncodeToString(b)
	admin, err := pgx.Connect(ctx, pgtest.ServerURL())
	if err != nil {
		tb.Fatalf("reach PostgreSQL at %s (set PGTEST_URL): %v", pgtest.ServerURL(), err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), pgtest.ServerURL())
		if err == nil {
			_, _ = c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			c.Close(context.Background())
		}
	})
	url := pgtest.WithDatabase(pgtest.ServerURL(), name)
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(pool.Close)
	for _, q := range []string{
		`CREATE TABLE payments (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, amount bigint NOT NULL,
			user_id bigint NOT NULL, merchant_id bigint NOT NULL, "timestamp" timestamptz NOT NULL DEFAULT now())`,
		`INSERT INTO payments (amount, user_id, merchant_id) SELECT 100000, u, 1 FROM generate_series($1::bigint, $2::bigint) u`,
	} {
		var args []any
		if strings.Contains(q, "$1") {
			args = []any{first, first + int64(users) - 1}
		}
		if _, err := pool.Exec(ctx, q, args...); err != nil {
			tb.Fatal(err)
		}
	}
	return url, pool
}
