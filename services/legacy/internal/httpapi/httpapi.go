// Package httpapi serves the as-is Finance Service's two routes:
// POST /payment, which calls the processor synchronously inside the request
// and stores the payment only once the processor said it succeeded, and
// GET /payment_feed?user_id=, which sums the user's payments.
package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/finsvc/finance/pkg/auth"
	"github.com/finsvc/finance/pkg/obs"
	"github.com/finsvc/finance/pkg/payment"
	"github.com/finsvc/finance/pkg/problem"
	"github.com/finsvc/finance/services/legacy/internal/processor"
	"github.com/finsvc/finance/services/legacy/internal/store"
)

// Processor is the seam to the external processor: the HTTP client in
// production, the same client against a fake server in tests.
type Processor interface {
	Pay(ctx context.Context, userID, amount int64) processor.Result
}

// Server holds what the handlers need.
type Server struct {
	logger    *slog.Logger
	store     *store.Store
	processor Processor
	verifier  *auth.Verifier
	metrics   *metrics
}

// New returns the service's handler: the two routes plus /healthz, /readyz
// and /metrics, with reg's collectors.
func New(logger *slog.Logger, st *store.Store, p Processor, v *auth.Verifier, reg *prometheus.Registry) http.Handler {
	s := &Server{logger: logger, store: st, processor: p, verifier: v, metrics: newMetrics(reg)}
	mux := obs.OpsMux(reg, st.Ping)
	mux.HandleFunc("POST /payment", s.instrument("POST /payment", s.createPayment))
	mux.HandleFunc("GET /payment_feed", s.instrument("GET /payment_feed", s.feed))
	return mux
}

type metrics struct {
	requests   *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	processor  *prometheus.CounterVec
	unrecorded prometheus.Counter
}

func newMetrics(reg *prometheus.Registry) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "legacy_http_requests_total", Help: "HTTP requests by route and status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "legacy_http_request_duration_seconds", Help: "HTTP request duration by route.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
		}, []string{"route"}),
		processor: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "legacy_processor_calls_total", Help: "Processor calls by outcome.",
		}, []string{"outcome"}),
		unrecorded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "legacy_executed_not_recorded_total",
			Help: "Payments the processor executed that could not be stored (the client got an error).",
		}),
	}
	reg.MustRegister(m.requests, m.duration, m.processor, m.unrecorded)
	return m
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.code = code
	r.ResponseWriter.WriteHeader(code)
}

func (s *Server) instrument(route string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		defer func() {
			if v := recover(); v != nil {
				s.logger.ErrorContext(r.Context(), "panic in handler", "route", route, "panic", fmt.Sprint(v))
				writeProblem(rec, problem.New(http.StatusInternalServerError, "internal", "Internal error", ""))
			}
			s.metrics.requests.WithLabelValues(route, strconv.Itoa(rec.code)).Inc()
			s.metrics.duration.WithLabelValues(route).Observe(time.Since(start).Seconds())
		}()
		h(rec, r)
	}
}

// authorize checks the bearer token and that it may act for userID.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request, userID int64) bool {
	p, err := s.verifier.FromHeader(r.Header.Get("Authorization"))
	if err != nil {
		w.Header().Set("WWW-Authenticate", `Bearer`)
		writeProblem(w, problem.New(http.StatusUnauthorized, "unauthorized", "Unauthorized", err.Error()))
		return false
	}
	if !p.CanActFor(userID) {
		writeProblem(w, problem.New(http.StatusForbidden, "forbidden", "Forbidden",
			fmt.Sprintf("this token may not act for user %d", userID)))
		return false
	}
	return true
}

type paymentRequest struct {
	UserID     int64 `json:"user_id"`
	Amount     int64 `json:"amount"`
	MerchantID int64 `json:"merchant_id"`
}

// PaymentResponse is the body of a stored payment.
type PaymentResponse struct {
	ID           int64  `json:"id"`
	UserID       int64  `json:"user_id"`
	MerchantID   int64  `json:"merchant_id"`
	Amount       int64  `json:"amount"`
	Timestamp    int64  `json:"timestamp"`
	Status       string `json:"status"`
	ProcessorRef string `json:"processor_ref"`
}

func (s *Server) createPayment(w http.ResponseWriter, r *http.Request) {
	var req paymentRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<16))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeProblem(w, problem.New(http.StatusBadRequest, "invalid-request", "Invalid request",
			"body must be JSON {\"user_id\":int,\"amount\":int,\"merchant_id\":int}: "+err.Error()))
		return
	}
	var bad []string
	if req.UserID <= 0 {
		bad = append(bad, "user_id must be a positive integer")
	}
	if req.MerchantID <= 0 {
		bad = append(bad, "merchant_id must be a positive integer")
	}
	if err := payment.ValidateAmount(req.Amount); err != nil {
		bad = append(bad, err.Error())
	}
	if len(bad) > 0 {
		writeProblem(w, problem.New(http.StatusBadRequest, "invalid-request", "Invalid request", strings.Join(bad, "; ")))
		return
	}
	if !s.authorize(w, r, req.UserID) {
		return
	}

	res := s.processor.Pay(r.Context(), req.UserID, req.Amount)
	s.metrics.processor.WithLabelValues(res.Outcome.String()).Inc()
	switch res.Outcome {
	case processor.Succeeded:
	case processor.Declined:
		writeProblem(w, problem.New(http.StatusPaymentRequired, "payment-declined", "Payment declined", res.Reason))
		return
	case processor.OverCapacity:
		p := problem.New(http.StatusServiceUnavailable, "processor-unavailable", "Processor unavailable",
			"the processor refused the payment (not executed): "+res.Reason)
		p.RetryAfter = 1
		writeProblem(w, p)
		return
	case processor.Timeout:
		// The processor may have executed it; the as-is API cannot tell us.
		s.logger.WarnContext(r.Context(), "processor call timed out; outcome unknown",
			"user_id", req.UserID, "amount", req.Amount, "err", res.Reason)
		writeProblem(w, problem.New(http.StatusGatewayTimeout, "processor-timeout", "Processor timeout",
			"the processor did not answer in time; the payment was not recorded"))
		return
	default:
		s.logger.WarnContext(r.Context(), "processor call failed; outcome unknown",
			"user_id", req.UserID, "amount", req.Amount, "err", res.Reason)
		writeProblem(w, problem.New(http.StatusBadGateway, "processor-error", "Processor error",
			"the processor call failed; the payment was not recorded: "+res.Reason))
		return
	}

	// The money has moved. Store it even if the client has gone away.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 10*time.Second)
	defer cancel()
	p, err := s.store.InsertPayment(ctx, req.UserID, req.MerchantID, req.Amount)
	if err != nil {
		s.metrics.unrecorded.Inc()
		s.logger.ErrorContext(r.Context(), "processor executed the payment but it could not be stored",
			"user_id", req.UserID, "amount", req.Amount, "processor_ref", res.Ref, "err", err)
		writeProblem(w, problem.New(http.StatusInternalServerError, "internal", "Internal error", "the payment could not be stored"))
		return
	}
	writeJSON(w, http.StatusCreated, PaymentResponse{
		ID: p.ID, UserID: p.UserID, MerchantID: p.MerchantID, Amount: p.Amount,
		Timestamp: p.Timestamp.Unix(), Status: "succeeded", ProcessorRef: res.Ref,
	})
}

// FeedResponse is the feed's JSON shape, the challenge's example.
type FeedResponse struct {
	UserID       int64              `json:"user_id"`
	Balance      int64              `json:"balance"`
	Transactions []FeedResponseItem `json:"transactions"`
}

// FeedResponseItem is one transaction of a feed.
type FeedResponseItem struct {
	ID        int64  `json:"id"`
	Name      string `json:"name"`
	Amount    int64  `json:"amount"`
	Timestamp int64  `json:"timestamp"`
}

func (s *Server) feed(w http.ResponseWriter, r *http.Request) {
	userID, err := strconv.ParseInt(r.URL.Query().Get("user_id"), 10, 64)
	if err != nil || userID <= 0 {
		writeProblem(w, problem.New(http.StatusBadRequest, "invalid-request", "Invalid request",
			"query parameter user_id must be a positive integer"))
		return
	}
	if !s.authorize(w, r, userID) {
		return
	}
	f, err := s.store.Feed(r.Context(), userID)
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return
		}
		s.logger.ErrorContext(r.Context(), "read feed", "user_id", userID, "err", err)
		writeProblem(w, problem.New(http.StatusInternalServerError, "internal", "Internal error", "the feed could not be read"))
		return
	}
	resp := FeedResponse{UserID: f.UserID, Balance: f.Balance, Transactions: make([]FeedResponseItem, 0, len(f.Transactions))}
	for _, t := range f.Transactions {
		resp.Transactions = append(resp.Transactions, FeedResponseItem{ID: t.ID, Name: t.Name, Amount: t.Amount, Timestamp: t.Timestamp.Unix()})
	}
	writeJSON(w, http.StatusOK, resp)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeProblem(w http.ResponseWriter, p problem.Details) {
	problem.Write(w, p)
}
