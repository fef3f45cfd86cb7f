package reconcile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Resource is the processor's record of one payment, by idempotency key.
type Resource struct {
	ID             string `json:"id"`
	IdempotencyKey string `json:"idempotency_key"`
	UserID         int64  `json:"user_id"`
	Amount         int64  `json:"amount"`
	Reference      string `json:"reference"`
	// Status is "succeeded" (executed) or "declined" (final, not executed).
	Status string `json:"status"`
	Reason string `json:"reason"`
}

// Lookup asks the processor what became of the payment sent with an
// idempotency key (the proposed API's GET /v2/payments/{key}).
type Lookup interface {
	// Lookup returns the resource and true, or false when the processor
	// has no payment under key (never executed, or the key expired). Any
	// other answer is an error: it proves nothing.
	Lookup(ctx context.Context, key string) (Resource, bool, error)
}

// HTTPLookup is the proposed API's lookup over HTTP.
type HTTPLookup struct {
	// BaseURL is the processor's address, e.g. http://127.0.0.1:8090.
	BaseURL string
	// Client defaults to a client with a 10-second timeout.
	Client *http.Client
}

// Lookup implements Lookup: GET {BaseURL}/v2/payments/{key}. Only a 404 with
// the body {"error":"not_found"} means "not found"; a bare 404 (the route
// missing, as on the as-is API) is an error.
func (l *HTTPLookup) Lookup(ctx context.Context, key string) (Resource, bool, error) {
	client := l.Client
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	u := strings.TrimRight(l.BaseURL, "/") + "/v2/payments/" + url.PathEscape(key)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return Resource{}, false, fmt.Errorf("lookup %s: %w", key, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return Resource{}, false, fmt.Errorf("lookup %s: %w", key, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return Resource{}, false, fmt.Errorf("lookup %s: read reply: %w", key, err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		var r Resource
		if err := json.Unmarshal(body, &r); err != nil {
			return Resource{}, false, fmt.Errorf("lookup %s: decode reply: %w", key, err)
		}
		if r.IdempotencyKey != "" && r.IdempotencyKey != key {
			return Resource{}, false, fmt.Errorf("lookup %s: the processor answered for key %q", key, r.IdempotencyKey)
		}
		return r, true, nil
	case http.StatusNotFound:
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(body, &e) == nil && e.Error == "not_found" {
			return Resource{}, false, nil
		}
		return Resource{}, false, fmt.Errorf("lookup %s: %w", key, ErrNoLookupRoute)
	default:
		return Resource{}, false, fmt.Errorf("lookup %s: HTTP %d: %s", key, resp.StatusCode, strings.TrimSpace(string(body)))
	}
}

// ErrNoLookupRoute is a 404 that is not the lookup's "not found": the
// processor has no lookup route, e.g. it speaks the as-is API.
var ErrNoLookupRoute = errors.New("HTTP 404 without {\"error\":\"not_found\"}: the processor has no lookup route (as-is API?)")
