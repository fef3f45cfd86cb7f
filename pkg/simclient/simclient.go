// Package simclient reads and steers the processor simulator
// (services/processor-sim): its settings, counters, execution record and
// outages. It is the one client of the simulator's /sim routes: the load
// generator, the chaos check, the dispatcher benchmark and pkg/verify (whose
// processor statement has the shape of GET /sim/executions) all read it
// through here.
package simclient

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"iter"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/finsvc/finance/pkg/payment"
)

// Timeouts of one call: a control call answers at once; the execution
// record may hold millions of rows and is streamed.
const (
	callTimeout      = 60 * time.Second
	statementTimeout = 5 * time.Minute
)

// Client talks to one simulator.
type Client struct {
	base string
	http *http.Client
}

// New returns a client of the simulator at baseURL.
func New(baseURL string) *Client {
	return &Client{base: strings.TrimRight(baseURL, "/"), http: &http.Client{}}
}

// URL is the simulator's base URL.
func (c *Client) URL() string { return c.base }

// ExecutionsURL is the address of the simulator's execution record.
func (c *Client) ExecutionsURL() string { return c.base + "/sim/executions" }

// Settings are the simulator's current settings (GET /sim/config).
type Settings struct {
	API              string  `json:"api"`
	RateLimit        float64 `json:"rate_limit"`
	RateBurst        int     `json:"rate_burst"`
	LatencyP50       string  `json:"latency_p50"`
	LatencyP99       string  `json:"latency_p99"`
	DeclineRate      float64 `json:"decline_rate"`
	ErrorRate        float64 `json:"error_rate"`
	LostResponseRate float64 `json:"lost_response_rate"`
}

// Stats are the simulator's counters since it started (GET /sim/stats):
// the ones its clients read. The simulator's own httpapi.Stats, which
// serves them, has these fields and more; the copy is deliberate: the
// simulator stands in for an outside party, whose wire types its clients
// decode with their own, as they will the real processor's.
type Stats struct {
	Calls              int64      `json:"calls"`
	Executed           int64      `json:"executed"`
	Declined           int64      `json:"declined"`
	Replayed           int64      `json:"replayed"`
	RateLimited        int64      `json:"rate_limited"`
	ErrorsInjected     int64      `json:"errors_injected"`
	ResponsesDropped   int64      `json:"responses_dropped"`
	OutageRejected     int64      `json:"outage_rejected"`
	ExecutionsRecorded int64      `json:"executions_recorded"`
	OutageUntil        *time.Time `json:"outage_until,omitempty"`
}

// Execution is one payment the processor executed: money moved. Declines
// are not executions.
type Execution struct {
	Seq            int64     `json:"seq"`
	ID             string    `json:"id"` // the processor's reference
	IdempotencyKey string    `json:"idempotency_key"`
	UserID         int64     `json:"user_id"`
	Amount         int64     `json:"amount"`
	Reference      string    `json:"reference"`
	API            string    `json:"api"`
	ExecutedAt     time.Time `json:"executed_at"`
	// AnsweredAt is when the simulator's reply left (executed_at plus the
	// rest of its latency); zero when the simulator did not say.
	AnsweredAt time.Time `json:"answered_at"`
}

// Answer is when the processor answered the executing call: AnsweredAt,
// or ExecutedAt when the simulator did not say.
func (e Execution) Answer() time.Time {
	if e.AnsweredAt.IsZero() {
		return e.ExecutedAt
	}
	return e.AnsweredAt
}

// PaymentUID returns the uid of the payment the execution was made for,
// read from its idempotency key "payment-<uid>" (payment.ParseProcessorKey),
// and false for an execution without such a key: the as-is API sends none,
// and a key of another form is not one of ours. The reference the dispatcher
// also sends ("<payment_id>") is informational only: payment ids repeat after
// a database restore, uids never do.
func (e Execution) PaymentUID() (uuid.UUID, bool) {
	return payment.ParseProcessorKey(e.IdempotencyKey)
}

// Settings reads the current settings.
func (c *Client) Settings(ctx context.Context) (Settings, error) {
	var s Settings
	return s, c.get(ctx, "/sim/config", &s)
}

// UpdateSettings changes the settings named in changes, by their JSON names
// (e.g. "latency_p50": "0s"), and leaves the others (PUT /sim/config).
func (c *Client) UpdateSettings(ctx context.Context, changes map[string]any) error {
	body, err := json.Marshal(changes)
	if err != nil {
		return fmt.Errorf("simulator settings: %w", err)
	}
	return c.do(ctx, http.MethodPut, "/sim/config", body, nil)
}

// Stats reads the counters.
func (c *Client) Stats(ctx context.Context) (Stats, error) {
	var s Stats
	return s, c.get(ctx, "/sim/stats", &s)
}

// Executions streams the simulator's execution record (GET /sim/executions).
func (c *Client) Executions(ctx context.Context) iter.Seq2[Execution, error] {
	return ReadExecutions(ctx, c.http, c.ExecutionsURL())
}

// ExecutionsAfter returns the executions with a sequence number above seq,
// in the record's order.
func (c *Client) ExecutionsAfter(ctx context.Context, seq int64) ([]Execution, error) {
	var out []Execution
	for e, err := range ReadExecutions(ctx, c.http, AfterSeqURL(c.ExecutionsURL(), seq)) {
		if err != nil {
			return nil, err
		}
		if e.Seq > seq {
			out = append(out, e)
		}
	}
	return out, nil
}

// AfterSeqURL is the statement at url reduced to the executions numbered
// above seq (the after_seq parameter of GET /sim/executions). A server that
// ignores the parameter answers with every execution: readers still skip
// the ones at or below seq.
func AfterSeqURL(url string, seq int64) string {
	sep := "?"
	if strings.Contains(url, "?") {
		sep = "&"
	}
	return url + sep + "after_seq=" + strconv.FormatInt(seq, 10)
}

// StartOutage makes every payment call fail with 503, without executing,
// for d.
func (c *Client) StartOutage(ctx context.Context, d time.Duration) error {
	body, _ := json.Marshal(map[string]string{"duration": d.String()})
	return c.do(ctx, http.MethodPost, "/sim/outage", body, nil)
}

// EndOutage ends an outage early.
func (c *Client) EndOutage(ctx context.Context) error {
	return c.do(ctx, http.MethodDelete, "/sim/outage", nil, nil)
}

func (c *Client) get(ctx context.Context, path string, v any) error {
	return c.do(ctx, http.MethodGet, path, nil, v)
}

func (c *Client) do(ctx context.Context, method, path string, body []byte, v any) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, r)
	if err != nil {
		return fmt.Errorf("simulator %s %s: %w", method, path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("simulator %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("simulator %s %s: read body: %w", method, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("simulator %s %s answered %d: %s", method, path, resp.StatusCode, bytes.TrimSpace(b))
	}
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			return fmt.Errorf("simulator %s %s: decode: %w", method, path, err)
		}
	}
	return nil
}

// ReadExecutions streams a statement of executions in the simulator's shape,
// GET url → {"count":N,"executions":[{...}, ...]}, from the simulator or
// from any processor that serves the same shape (docs/correctness.md
// proposes it for the real one). It stops at the first error, which it
// yields; the whole read is bounded by a 5-minute timeout.
func ReadExecutions(ctx context.Context, client *http.Client, url string) iter.Seq2[Execution, error] {
	if client == nil {
		client = http.DefaultClient
	}
	return func(yield func(Execution, error) bool) {
		ctx, cancel := context.WithTimeout(ctx, statementTimeout)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			yield(Execution{}, fmt.Errorf("statement request: %w", err))
			return
		}
		resp, err := client.Do(req)
		if err != nil {
			yield(Execution{}, fmt.Errorf("get statement: %w", err))
			return
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			yield(Execution{}, fmt.Errorf("get statement %s: HTTP %d: %s", url, resp.StatusCode, strings.TrimSpace(string(body))))
			return
		}
		if err := DecodeExecutions(resp.Body, func(e Execution) bool { return yield(e, nil) }); err != nil {
			yield(Execution{}, fmt.Errorf("read statement %s: %w", url, err))
		}
	}
}

// DecodeExecutions walks {"executions":[...], ...} token by token, so that
// only one execution is in memory at a time, and hands each to yield until
// it returns false. Other fields are skipped. A body that is not one whole
// JSON object is an error, after the executions it held were yielded.
func DecodeExecutions(r io.Reader, yield func(Execution) bool) error {
	dec := json.NewDecoder(r)
	if err := expectDelim(dec, '{'); err != nil {
		return err
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		if key, _ := tok.(string); key != "executions" {
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return err
			}
			continue
		}
		if err := expectDelim(dec, '['); err != nil {
			return err
		}
		for dec.More() {
			var e Execution
			if err := dec.Decode(&e); err != nil {
				return err
			}
			if !yield(e) {
				return nil
			}
		}
		if _, err := dec.Token(); err != nil { // ]
			return err
		}
	}
	// The object ends, and the body with it: More stops at the end of the
	// input as at a '}', so without this a statement cut short between
	// its members (after "count", after the executions) read as whole.
	if err := expectDelim(dec, '}'); err != nil {
		return fmt.Errorf("the statement ends early: %w", err)
	}
	if tok, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("data after the statement: %v %v", tok, err)
	}
	return nil
}

func expectDelim(dec *json.Decoder, want json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if d, ok := tok.(json.Delim); !ok || d != want {
		return fmt.Errorf("want %q, got %v", want, tok)
	}
	return nil
}
