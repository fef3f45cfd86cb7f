// Package simclient reads and steers the processor simulator
// (services/processor-sim): its settings, counters, execution record and
// outages. The load generator uses it as the ground truth of what money moved.
package simclient

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Client talks to one simulator.
type Client struct {
	base string
	http *http.Client
}

// New returns a client of the simulator at baseURL.
func New(baseURL string) *Client {
	return &Client{base: strings.TrimRight(baseURL, "/"), http: &http.Client{Timeout: 60 * time.Second}}
}

// URL is the simulator's base URL.
func (c *Client) URL() string { return c.base }

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

// Stats are the simulator's counters since it started (GET /sim/stats).
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

// Execution is a payment the simulator executed: money moved.
type Execution struct {
	Seq            int64     `json:"seq"`
	ID             string    `json:"id"`
	IdempotencyKey string    `json:"idempotency_key"`
	UserID         int64     `json:"user_id"`
	Amount         int64     `json:"amount"`
	Reference      string    `json:"reference"`
	API            string    `json:"api"`
	ExecutedAt     time.Time `json:"executed_at"`
}

// Settings reads the current settings.
func (c *Client) Settings(ctx context.Context) (Settings, error) {
	var s Settings
	return s, c.get(ctx, "/sim/config", &s)
}

// Stats reads the counters.
func (c *Client) Stats(ctx context.Context) (Stats, error) {
	var s Stats
	return s, c.get(ctx, "/sim/stats", &s)
}

// ExecutionsAfter returns the executions with a sequence number above seq.
func (c *Client) ExecutionsAfter(ctx context.Context, seq int64) ([]Execution, error) {
	var r struct {
		Count      int         `json:"count"`
		Executions []Execution `json:"executions"`
	}
	if err := c.get(ctx, "/sim/executions", &r); err != nil {
		return nil, err
	}
	out := r.Executions[:0]
	for _, e := range r.Executions {
		if e.Seq > seq {
			out = append(out, e)
		}
	}
	return out, nil
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
