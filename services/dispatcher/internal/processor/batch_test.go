package processor

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/finsvc/finance/pkg/payment"
)

// paymentN is a payment of its own (its own key) for the batch tests.
func paymentN(n int) Payment {
	return Payment{ID: int64(n), UID: uuid.New(), UserID: int64(100 + n), Amount: -100}
}

// gate is a step that holds its call until open is closed, then succeeds.
func gate(held chan<- struct{}, open <-chan struct{}) step {
	var once sync.Once
	return func(w http.ResponseWriter, r *http.Request) {
		once.Do(func() { close(held) })
		<-open
		reply200(`{"id":"ref-9","status":"succeeded"}`)(w, r)
	}
}

// waiting waits until n calls wait for a batch.
func waiting(t *testing.T, c Client, n int) {
	t.Helper()
	co := c.(*client).batch.co
	for deadline := time.Now().Add(10 * time.Second); co.Waiting() != n; {
		if time.Now().After(deadline) {
			t.Fatalf("%d calls wait for a batch, want %d", co.Waiting(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// Payments that wait while a batch call is in flight go together in the
// next one, and each gets its own answer.
func TestBatchCallsShareOneCall(t *testing.T) {
	t.Parallel()
	held, open := make(chan struct{}), make(chan struct{})
	c, b := setup(t, APIProposed, func(cfg *Config) { cfg.BatchMax, cfg.BatchInFlight = 8, 1 }, gate(held, open))
	results := make(chan Result, 6)
	execute := func(p Payment) {
		r, err := c.Execute(t.Context(), p)
		if err != nil {
			t.Errorf("Execute %d: %v", p.ID, err)
		}
		results <- r
	}
	go execute(paymentN(0))
	<-held // the first batch call is in flight
	for i := 1; i <= 5; i++ {
		go execute(paymentN(i))
	}
	waiting(t, c, 5)
	close(open)
	for range 6 {
		if r := <-results; r.Status != payment.StatusSucceeded || r.Attempts != 1 {
			t.Errorf("Result = %+v, want succeeded after 1 call", r)
		}
	}
	if sizes := b.fake.seenBatches(); !slices.Equal(sizes, []int{1, 5}) {
		t.Errorf("batch calls of %v payments, want [1 5]", sizes)
	}
	keys := map[string]bool{}
	for _, call := range b.fake.seen() {
		keys[call.Key] = true
	}
	if len(keys) != 6 {
		t.Errorf("the processor saw %d keys, want the 6 payments' own", len(keys))
	}
	if v := testutil.ToFloat64(b.metrics.calls.WithLabelValues("succeeded")); v != 6 {
		t.Errorf("calls counted as succeeded = %v, want 6 (one a payment)", v)
	}
}

// A payment whose context ends while it waits for a batch is never sent:
// ErrNotSent, so its redelivery may send it.
func TestBatchWithdrawnPaymentIsNotSent(t *testing.T) {
	t.Parallel()
	held, open := make(chan struct{}), make(chan struct{})
	c, b := setup(t, APIProposed, func(cfg *Config) { cfg.BatchMax, cfg.BatchInFlight = 8, 1 }, gate(held, open))
	first := make(chan error, 1)
	go func() {
		_, err := c.Execute(t.Context(), paymentN(0))
		first <- err
	}()
	<-held
	ctx, cancel := context.WithCancel(t.Context())
	left := make(chan error, 1)
	withdrawn := paymentN(1)
	go func() {
		_, err := c.Execute(ctx, withdrawn)
		left <- err
	}()
	waiting(t, c, 1)
	cancel()
	if err := <-left; !errors.Is(err, ErrNotSent) {
		t.Errorf("Execute of a payment withdrawn from its batch: %v, want ErrNotSent", err)
	}
	close(open)
	if err := <-first; err != nil {
		t.Errorf("Execute of the payment in flight: %v", err)
	}
	for _, call := range b.fake.seen() {
		if call.Key == withdrawn.IdempotencyKey() {
			t.Errorf("the processor saw the withdrawn payment")
		}
	}
}

// A processor without the batch route (404) executed nothing: the payment
// is sent again alone, and every later payment too.
func TestBatchRouteMissingFallsBackToSingleCalls(t *testing.T) {
	t.Parallel()
	c, b := setup(t, APIProposed, func(cfg *Config) { cfg.BatchMax = 8 }, reply200(`{"id":"ref-9","status":"succeeded"}`))
	b.fake.noBatch = true
	r, err := c.Execute(t.Context(), paymentN(0))
	if err != nil || r.Status != payment.StatusSucceeded || r.Attempts != 2 {
		t.Fatalf("Execute = %+v, %v; want succeeded after 2 calls (the refused batch, then alone)", r, err)
	}
	if r, err := c.Execute(t.Context(), paymentN(1)); err != nil || r.Status != payment.StatusSucceeded || r.Attempts != 1 {
		t.Fatalf("second Execute = %+v, %v; want succeeded after 1 call", r, err)
	}
	if sizes := b.fake.seenBatches(); !slices.Equal(sizes, []int{1}) {
		t.Errorf("batch calls %v, want one: none after the processor said it has no batch route", sizes)
	}
	if n := len(b.fake.seen()); n != 2 {
		t.Errorf("the processor executed %d single calls, want 2", n)
	}
	if v := testutil.ToFloat64(b.metrics.calls.WithLabelValues("batch_unsupported")); v != 1 {
		t.Errorf("calls counted as batch_unsupported = %v, want 1", v)
	}
}
