// Package httpapi serves the processor simulator over HTTP: the as-is and
// proposed payment APIs, the /sim control and inspection routes, and the
// ops routes (/healthz, /readyz, /metrics).
package httpapi

import (
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

	"github.com/finsvc/finance/pkg/obs"
	"github.com/finsvc/finance/pkg/payment"
	"github.com/finsvc/finance/services/processor-sim/internal/sim"
)

// maxBody bounds a request body; payment requests are tiny.
const maxBody = 64 << 10

// maxBatchBody bounds the body of a batch: MaxBatch payments of at most
// about 3 KiB each, even with every byte of their key and reference
// escaped in the JSON.
const maxBatchBody = sim.MaxBatch * (4 << 10)

// maxKeyLen bounds an idempotency key and a reference.
const maxKeyLen = 255

type handler struct {
	sim    *sim.Simulator
	logger *slog.Logger
	meter  *meter
}

// New returns the simulator's HTTP handler. Its metrics are registered on
// reg, which /metrics also serves.
func New(s *sim.Simulator, logger *slog.Logger, reg *prometheus.Registry) http.Handler {
	h := &handler{sim: s, logger: logger, meter: newMeter(reg)}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /payment", h.payAsIs)
	mux.HandleFunc("POST /v2/payments", h.payProposed)
	mux.HandleFunc("GET /v2/payments/{key}", h.getPayment)
	mux.HandleFunc("POST /v2/payment-batches", h.payBatch)
	mux.HandleFunc("GET /sim/executions", h.executions)
	mux.HandleFunc("GET /sim/stats", h.stats)
	mux.HandleFunc("GET /sim/config", h.getConfig)
	mux.HandleFunc("PUT /sim/config", h.putConfig)
	mux.HandleFunc("GET /sim/outage", h.getOutage)
	mux.HandleFunc("POST /sim/outage", h.startOutage)
	mux.HandleFunc("DELETE /sim/outage", h.endOutage)
	mux.HandleFunc("POST /sim/expire-keys", h.expireKeys)
	ops := obs.OpsMux(reg, nil, obs.WithLogLevel(logger))
	for _, p := range []string{"GET /healthz", "GET /readyz", "GET /metrics", "GET /loglevel", "PUT /loglevel"} {
		mux.Handle(p, ops)
	}
	return mux
}

// asIsRequest is the body of POST /payment. Pointers tell a missing field
// from a zero one.
type asIsRequest struct {
	UserID *int64 `json:"user_id"`
	Amount *int64 `json:"amount"`
}

// asIsResponse is the as-is API's reply: no key, no resource.
type asIsResponse struct {
	ID     string     `json:"id"`
	Status sim.Status `json:"status"`
	Reason string     `json:"reason,omitempty"`
}

// proposedRequest is the body of POST /v2/payments.
type proposedRequest struct {
	UserID    *int64 `json:"user_id"`
	Amount    *int64 `json:"amount"`
	Reference string `json:"reference"`
}

// batchRequest is the body of POST /v2/payment-batches. Items are pointers
// so that a null one is told apart (a malformed batch).
type batchRequest struct {
	Payments []*batchPayment `json:"payments"`
}

// batchPayment is one payment of a batch: POST /v2/payments' body with the
// Idempotency-Key header as a field.
type batchPayment struct {
	IdempotencyKey string `json:"idempotency_key"`
	proposedRequest
}

// batchResponse is the 200 answer to a batch: one result per payment, in
// the request's order.
type batchResponse struct {
	Results []batchResult `json:"results"`
}

// batchResult is what POST /v2/payments would have answered for one
// payment alone: its status, its Idempotent-Replayed and Retry-After
// headers, and its body (the resource, or {"error":"..."}).
type batchResult struct {
	Status             int  `json:"status"`
	IdempotentReplayed bool `json:"idempotent_replayed,omitempty"`
	RetryAfter         int  `json:"retry_after,omitempty"`
	Body               any  `json:"body"`
}

func (h *handler) payAsIs(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	var req asIsRequest
	if err := decode(w, r, &req, maxBody); err != nil {
		h.badRequest(w, sim.APIAsIs, start, err)
		return
	}
	user, amount, err := validPayment(req.UserID, req.Amount)
	if err != nil {
		h.badRequest(w, sim.APIAsIs, start, err)
		return
	}
	res, err := h.sim.Pay(r.Context(), sim.Call{API: sim.APIAsIs, UserID: user, Amount: amount})
	h.meter.pay(sim.APIAsIs, res, err, start)
	if err != nil {
		h.payError(w, r, sim.APIAsIs, err)
		return
	}
	if res.DropResponse {
		h.drop(w, r)
		return
	}
	writeJSON(w, http.StatusOK, asIsResponse{ID: res.Resource.ID, Status: res.Resource.Status, Reason: res.Resource.Reason})
}

func (h *handler) payProposed(w http.ResponseWriter, r *http.Request) {
	if h.sim.Settings().API != sim.APIProposed {
		writeError(w, http.StatusNotFound, "not found")
		return
	}
	start := time.Now()
	key := strings.TrimSpace(r.Header.Get("Idempotency-Key"))
	if err := validKey("Idempotency-Key header", key); err != nil {
		h.badRequest(w, sim.APIProposed, start, err)
		return
	}
	var req proposedRequest
	if err := decode(w, r, &req, maxBody); err != nil {
		h.badRequest(w, sim.APIProposed, start, err)
		return
	}
	c, err := req.call(key)
	if err != nil {
		h.badRequest(w, sim.APIProposed, start, err)
		return
	}
	res, err := h.sim.Pay(r.Context(), c)
	h.meter.pay(sim.APIProposed, res, err, start)
	if err != nil {
		h.payError(w, r, sim.APIProposed, err)
		return
	}
	if res.DropResponse {
		h.drop(w, r)
		return
	}
	if res.Replayed {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	writeJSON(w, http.StatusOK, res.Resource)
}

// payBatch is POST /v2/payment-batches: up to sim.MaxBatch payments in one
// request, each answered in the 200's results as POST /v2/payments would
// answer it alone. A malformed batch (400), an outage (503), an injected
// error (500) or a lost reply concerns the whole batch.
func (h *handler) payBatch(w http.ResponseWriter, r *http.Request) {
	if h.sim.Settings().API != sim.APIProposed {
		writeError(w, http.StatusNotFound, "not found")
		return
	}
	start := time.Now()
	h.meter.batch()
	var req batchRequest
	if err := decode(w, r, &req, maxBatchBody); err != nil {
		h.badRequest(w, sim.APIProposed, start, err)
		return
	}
	if len(req.Payments) == 0 {
		h.badRequest(w, sim.APIProposed, start, fmt.Errorf("payments is required: 1 to %d payments", sim.MaxBatch))
		return
	}
	// Trimmed as the header is, so that a payment has the same key in a
	// batch as alone.
	keys := make([]string, len(req.Payments))
	for i, p := range req.Payments {
		if p == nil {
			h.badRequest(w, sim.APIProposed, start, fmt.Errorf("payments[%d] is null; want a payment object", i))
			return
		}
		keys[i] = strings.TrimSpace(p.IdempotencyKey)
	}
	if err := sim.CheckBatch(keys); err != nil {
		h.badRequest(w, sim.APIProposed, start, err)
		return
	}
	results := make([]batchResult, len(req.Payments))
	var calls []sim.Call
	var at []int // calls[j] is payment at[j]
	for i, p := range req.Payments {
		c, err := p.call(keys[i])
		if err != nil {
			h.meter.badRequest(sim.APIProposed, start)
			results[i] = batchResult{Status: http.StatusBadRequest, Body: errorBody{Error: oneLine(err)}}
			continue
		}
		calls = append(calls, c)
		at = append(at, i)
	}
	items, err := h.sim.PayBatch(r.Context(), calls)
	drop := false
	for j, it := range items {
		h.meter.pay(sim.APIProposed, it.Result, it.Err, start)
		drop = drop || it.DropResponse
		results[at[j]] = itemResult(it)
	}
	if err != nil {
		h.payError(w, r, sim.APIProposed, err)
		return
	}
	if drop {
		h.drop(w, r)
		return
	}
	writeJSON(w, http.StatusOK, batchResponse{Results: results})
}

// call checks p as POST /v2/payments checks its header and body.
func (p *batchPayment) call(key string) (sim.Call, error) {
	if err := validKey("idempotency_key", key); err != nil {
		return sim.Call{}, err
	}
	return p.proposedRequest.call(key)
}

// itemResult is the result of one payment of a batch that the simulator
// settled or refused alone.
func itemResult(it sim.ItemResult) batchResult {
	if it.Err != nil {
		p := problemOf(sim.APIProposed, it.Err)
		return batchResult{Status: p.status, RetryAfter: p.retryAfter, Body: errorBody{Error: p.msg}}
	}
	return batchResult{Status: http.StatusOK, IdempotentReplayed: it.Replayed, Body: it.Resource}
}

func (h *handler) getPayment(w http.ResponseWriter, r *http.Request) {
	if h.sim.Settings().API != sim.APIProposed {
		writeError(w, http.StatusNotFound, "not found")
		return
	}
	res, err := h.sim.Lookup(r.PathValue("key"))
	h.meter.lookup(err == nil, err)
	var o *sim.OutageError
	switch {
	case errors.As(err, &o):
		writeOutage(w, o)
	case errors.Is(err, sim.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found")
	case err != nil:
		h.logger.ErrorContext(r.Context(), "lookup payment", "err", err)
		writeError(w, http.StatusInternalServerError, "internal error")
	default:
		writeJSON(w, http.StatusOK, res)
	}
}

// validKey checks an idempotency key; name says where it came from.
func validKey(name, key string) error {
	if key == "" {
		return fmt.Errorf("%s is required", name)
	}
	if len(key) > maxKeyLen {
		return fmt.Errorf("%s must be at most %d bytes", name, maxKeyLen)
	}
	return nil
}

// call checks the body of a proposed-API payment whose key is valid, and
// makes the call.
func (req proposedRequest) call(key string) (sim.Call, error) {
	user, amount, err := validPayment(req.UserID, req.Amount)
	if err == nil && len(req.Reference) > maxKeyLen {
		err = fmt.Errorf("reference must be at most %d bytes", maxKeyLen)
	}
	if err != nil {
		return sim.Call{}, err
	}
	return sim.Call{API: sim.APIProposed, Key: key, UserID: user, Amount: amount, Reference: req.Reference}, nil
}

// validPayment checks the fields common to both APIs.
func validPayment(userID, amount *int64) (int64, int64, error) {
	var errs []error
	if userID == nil {
		errs = append(errs, errors.New("user_id is required"))
	} else if *userID <= 0 {
		errs = append(errs, errors.New("user_id must be a positive integer"))
	}
	if amount == nil {
		errs = append(errs, errors.New("amount is required"))
	} else if err := payment.ValidateAmount(*amount); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return 0, 0, errors.Join(errs...)
	}
	return *userID, *amount, nil
}

func (h *handler) badRequest(w http.ResponseWriter, api sim.API, start time.Time, err error) {
	h.meter.badRequest(api, start)
	writeError(w, http.StatusBadRequest, oneLine(err))
}

// payError answers a call, or a batch, that did not settle normally.
func (h *handler) payError(w http.ResponseWriter, r *http.Request, api sim.API, err error) {
	if errors.Is(err, sim.ErrClientGone) {
		// Nobody is listening any more.
		h.logger.DebugContext(r.Context(), "client went away", "api", api, "err", err)
		return
	}
	p := problemOf(api, err)
	if p.unexpected {
		h.logger.ErrorContext(r.Context(), "payment call failed", "api", api, "err", err)
	}
	if p.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(p.retryAfter))
	}
	writeError(w, p.status, p.msg)
}

// problem is the answer to a payment call that did not settle normally:
// the whole reply of a single call, or one result of a batch.
type problem struct {
	status     int
	msg        string
	retryAfter int  // seconds for Retry-After; 0 for none
	unexpected bool // not a simulated fault: worth an error log
}

// problemOf maps an error of the simulator to its problem.
func problemOf(api sim.API, err error) problem {
	var (
		o  *sim.OutageError
		rl *sim.RateLimitError
	)
	switch {
	case errors.As(err, &o):
		return problem{status: http.StatusServiceUnavailable, msg: "outage", retryAfter: o.Seconds()}
	case errors.As(err, &rl) && api == sim.APIAsIs:
		// The as-is API gives no hint when to come back.
		return problem{status: http.StatusServiceUnavailable, msg: "over capacity"}
	case errors.As(err, &rl):
		return problem{status: http.StatusTooManyRequests, msg: "rate_limited", retryAfter: rl.Seconds()}
	case errors.Is(err, sim.ErrInjected):
		return problem{status: http.StatusInternalServerError, msg: "internal error (simulated)"}
	case errors.Is(err, sim.ErrKeyReuse):
		return problem{status: http.StatusUnprocessableEntity, msg: "idempotency_key_reuse"}
	default:
		return problem{status: http.StatusInternalServerError, msg: "internal error", unexpected: true}
	}
}

// drop closes the connection without writing a byte: the payment settled
// but the caller never learns how. Hijacking works on HTTP/1.x; elsewhere
// http.ErrAbortHandler makes the server reset the stream instead.
func (h *handler) drop(w http.ResponseWriter, r *http.Request) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if err := conn.Close(); err != nil {
		h.logger.DebugContext(r.Context(), "close dropped connection", "err", err)
	}
}

// executionsResponse is the body of GET /sim/executions.
type executionsResponse struct {
	Count      int             `json:"count"`
	Executions []sim.Execution `json:"executions"`
}

func (h *handler) executions(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var f sim.Filter
	if v := q.Get("user_id"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("user_id %q: want a positive integer", v))
			return
		}
		f.UserID = n
	}
	f.Key = q.Get("key")
	if v := q.Get("after_seq"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("after_seq %q: want a sequence number, 0 or more", v))
			return
		}
		f.AfterSeq = n
	}
	ex := h.sim.Executions(f)
	writeJSON(w, http.StatusOK, executionsResponse{Count: len(ex), Executions: ex})
}

func (h *handler) stats(w http.ResponseWriter, _ *http.Request) {
	st := h.meter.snapshot()
	st.ExecutionsRecorded = h.sim.ExecutionCount()
	st.IdempotencyKeys = h.sim.KeyCount()
	if u := h.sim.OutageUntil(); !u.IsZero() {
		u = u.UTC()
		st.OutageUntil = &u
	}
	writeJSON(w, http.StatusOK, st)
}

func (h *handler) getConfig(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, h.sim.Settings())
}

func (h *handler) putConfig(w http.ResponseWriter, r *http.Request) {
	var p sim.Patch
	if err := decode(w, r, &p, maxBody); err != nil {
		writeError(w, http.StatusBadRequest, oneLine(err))
		return
	}
	s, err := h.sim.UpdateSettings(p)
	if err != nil {
		writeError(w, http.StatusBadRequest, oneLine(err))
		return
	}
	h.logger.InfoContext(r.Context(), "settings changed", "settings", s)
	writeJSON(w, http.StatusOK, s)
}

// outageStatus is the body of the /sim/outage routes.
type outageStatus struct {
	Active bool       `json:"active"`
	Until  *time.Time `json:"until,omitempty"`
}

func outageOf(until time.Time) outageStatus {
	if until.IsZero() {
		return outageStatus{}
	}
	u := until.UTC()
	return outageStatus{Active: true, Until: &u}
}

func (h *handler) getOutage(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, outageOf(h.sim.OutageUntil()))
}

func (h *handler) startOutage(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Duration *sim.Duration `json:"duration"`
	}
	if err := decode(w, r, &req, maxBody); err != nil {
		writeError(w, http.StatusBadRequest, oneLine(err))
		return
	}
	if req.Duration == nil || *req.Duration <= 0 {
		writeError(w, http.StatusBadRequest, `duration is required and must be > 0, e.g. {"duration":"20s"}`)
		return
	}
	until := h.sim.StartOutage(time.Duration(*req.Duration))
	h.logger.InfoContext(r.Context(), "outage started", "until", until)
	writeJSON(w, http.StatusOK, outageOf(until))
}

func (h *handler) endOutage(w http.ResponseWriter, r *http.Request) {
	h.sim.EndOutage()
	h.logger.InfoContext(r.Context(), "outage ended")
	writeJSON(w, http.StatusOK, outageOf(time.Time{}))
}

// expireKeys is POST /sim/expire-keys: every settled idempotency key is
// forgotten at once, as if its retention had passed.
func (h *handler) expireKeys(w http.ResponseWriter, r *http.Request) {
	n := h.sim.ExpireKeys()
	h.logger.InfoContext(r.Context(), "idempotency keys expired", "count", n)
	writeJSON(w, http.StatusOK, map[string]int{"expired": n})
}

// decode reads exactly one JSON object with only known fields, of at most
// limit bytes, into v.
func decode(w http.ResponseWriter, r *http.Request, v any, limit int64) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return errors.New("request body is empty; want a JSON object")
		}
		return fmt.Errorf("malformed JSON body: %w", err)
	}
	if err := dec.Decode(&struct{}{}); !errors.Is(err, io.EOF) {
		return errors.New("malformed JSON body: want a single JSON object")
	}
	return nil
}

func writeOutage(w http.ResponseWriter, o *sim.OutageError) {
	w.Header().Set("Retry-After", strconv.Itoa(o.Seconds()))
	writeError(w, http.StatusServiceUnavailable, "outage")
}

// errorBody is every error reply: {"error":"..."}.
type errorBody struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, errorBody{Error: msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// oneLine joins the lines of an errors.Join error for a JSON message.
func oneLine(err error) string {
	return strings.ReplaceAll(err.Error(), "\n", "; ")
}
