// Package processor calls the external payment processor's as-is API:
// POST /payment {"user_id","amount"}, with no payment id, no idempotency key
// and no merchant. The as-is service calls it synchronously, inside the
// client's request, once.
package processor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// Outcome is what one call to the processor came to.
type Outcome int

// The outcomes of a call. Only Succeeded and Declined are answers about the
// payment; OverCapacity is a refusal before executing; Timeout and Failed are
// ambiguous: the processor may or may not have executed the payment, and the
// as-is API gives no way to find out.
const (
	Succeeded Outcome = iota + 1
	Declined
	OverCapacity
	Timeout
	Failed
)

// String names the outcome for logs and metrics.
func (o Outcome) String() string {
	switch o {
	case Succeeded:
		return "succeeded"
	case Declined:
		return "declined"
	case OverCapacity:
		return "over_capacity"
	case Timeout:
		return "timeout"
	case Failed:
		return "failed"
	default:
		return fmt.Sprintf("outcome(%d)", int(o))
	}
}

// Result is the outcome of a call and what the processor said.
type Result struct {
	Outcome Outcome
	// Ref is the processor's id of an executed payment.
	Ref string
	// Reason is the decline reason, or what went wrong.
	Reason string
}

// Client calls the processor.
type Client struct {
	baseURL string
	timeout time.Duration
	http    *http.Client
}

// New returns a client of the processor at baseURL, each call bounded by timeout.
func New(baseURL string, timeout time.Duration) *Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	// The service calls one host from every in-flight request; the default of
	// two idle connections per host would open and close connections under load.
	t.MaxIdleConns = 512
	t.MaxIdleConnsPerHost = 512
	return &Client{baseURL: strings.TrimRight(baseURL, "/"), timeout: timeout, http: &http.Client{Transport: t}}
}

type request struct {
	UserID int64 `json:"user_id"`
	Amount int64 `json:"amount"`
}

type response struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	Reason string `json:"reason"`
	Error  string `json:"error"`
}

// Pay asks the processor to add amount (signed, minor units) to userID's funds.
func (c *Client) Pay(ctx context.Context, userID, amount int64) Result {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	body, _ := json.Marshal(request{UserID: userID, Amount: amount})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.baseURL+"/payment", bytes.NewReader(body))
	if err != nil {
		return Result{Outcome: Failed, Reason: err.Error()}
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return classifyTransportError(ctx, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if err != nil {
		return classifyTransportError(ctx, err)
	}
	var r response
	jsonErr := json.Unmarshal(b, &r)
	switch {
	case resp.StatusCode == http.StatusServiceUnavailable:
		// The as-is API refuses above its limit (and during an outage) with
		// 503 before executing.
		return Result{Outcome: OverCapacity, Reason: firstNonEmpty(r.Error, "processor answered 503")}
	case resp.StatusCode != http.StatusOK:
		return Result{Outcome: Failed, Reason: fmt.Sprintf("processor answered %d: %s", resp.StatusCode, firstNonEmpty(r.Error, strings.TrimSpace(string(b))))}
	case jsonErr != nil:
		return Result{Outcome: Failed, Reason: fmt.Sprintf("unparsable processor reply: %v", jsonErr)}
	case r.Status == "succeeded":
		return Result{Outcome: Succeeded, Ref: r.ID}
	case r.Status == "declined":
		return Result{Outcome: Declined, Ref: r.ID, Reason: firstNonEmpty(r.Reason, "declined")}
	default:
		return Result{Outcome: Failed, Reason: fmt.Sprintf("processor answered status %q", r.Status)}
	}
}

func classifyTransportError(ctx context.Context, err error) Result {
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout()) {
		return Result{Outcome: Timeout, Reason: err.Error()}
	}
	return Result{Outcome: Failed, Reason: err.Error()}
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
