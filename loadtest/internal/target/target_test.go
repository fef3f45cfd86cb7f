package target

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// closeFirst is a server that closes the connection of the first request
// it gets without answering (as a server does whose read-header timeout ran
// out), and answers every later one with 202 and a payment.
type closeFirst struct {
	mu   sync.Mutex
	keys []string
}

func (s *closeFirst) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.keys = append(s.keys, r.Header.Get("Idempotency-Key"))
	first := len(s.keys) == 1
	s.mu.Unlock()
	if first {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	_, _ = w.Write([]byte(`{"id":7,"uid":"u","status_url":"/v1/payments/u"}`))
}

func TestPayRetriesAConnectionClosedBeforeAnswering(t *testing.T) {
	s := &closeFirst{}
	srv := httptest.NewServer(s)
	defer srv.Close()
	c := New(Pipeline, srv.URL, 4, 5*time.Second)
	defer c.Close()

	r := c.Pay(t.Context(), "tok", Payment{UserID: 1, MerchantID: 2, Amount: -3, Key: "k-1"})
	if r.Class != OK || r.PaymentID != 7 || !r.Retried {
		t.Fatalf("Pay = %+v, want 202 for payment 7 on the second try", r)
	}
	if len(s.keys) != 2 || s.keys[0] != "k-1" || s.keys[1] != "k-1" {
		t.Errorf("the server got keys %q, want the same key twice", s.keys)
	}
}

func TestPayNeverResendsToTheAsIsService(t *testing.T) {
	s := &closeFirst{}
	srv := httptest.NewServer(s)
	defer srv.Close()
	c := New(Legacy, srv.URL, 4, 5*time.Second)
	defer c.Close()

	// Without an idempotency key a second send could pay twice.
	r := c.Pay(t.Context(), "tok", Payment{UserID: 1, MerchantID: 2, Amount: -3, Key: "k-1"})
	if r.Class != NetError || r.Retried {
		t.Fatalf("Pay = %+v, want a net error, not retried", r)
	}
	if len(s.keys) != 1 {
		t.Errorf("the server got %d requests, want 1", len(s.keys))
	}
}
