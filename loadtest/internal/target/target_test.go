package target

import (
	"fmt"
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

// TestPayRetriesAConnectionClosedBeforeAnswering: a pipeline payment whose
// connection the server closed before answering is sent once more with the
// same key; an as-is payment, which has no key, never is (a second send
// could pay twice).
func TestPayRetriesAConnectionClosedBeforeAnswering(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		kind      Kind
		wantClass Class
		wantKeys  []string
	}{
		{Pipeline, OK, []string{"k-1", "k-1"}},
		{Legacy, NetError, []string{""}}, // one request, and the as-is API sends no key
	} {
		t.Run(string(tt.kind), func(t *testing.T) {
			t.Parallel()
			s := &closeFirst{}
			srv := httptest.NewServer(s)
			defer srv.Close()
			c := New(tt.kind, srv.URL, 4, 5*time.Second)
			defer c.Close()

			r := c.Pay(t.Context(), "tok", Payment{UserID: 1, MerchantID: 2, Amount: -3, Key: "k-1"})
			if r.Class != tt.wantClass || r.Retried != (tt.kind == Pipeline) {
				t.Errorf("Pay = %+v, want class %s, retried %v", r, tt.wantClass, tt.kind == Pipeline)
			}
			if tt.kind == Pipeline && r.PaymentID != 7 {
				t.Errorf("payment id %d, want 7 from the second try", r.PaymentID)
			}
			if fmt.Sprint(s.keys) != fmt.Sprint(tt.wantKeys) {
				t.Errorf("the server got keys %q, want %q", s.keys, tt.wantKeys)
			}
		})
	}
}
