// Package problem writes RFC 9457 problem details (application/problem+json).
package problem

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// ContentType is the media type of a problem document.
const ContentType = "application/problem+json"

// TypeBase prefixes every problem type URI of this service.
const TypeBase = "https://finance.example/problems/"

// Details is an RFC 9457 problem document.
type Details struct {
	Type     string `json:"type"`
	Title    string `json:"title"`
	Status   int    `json:"status"`
	Detail   string `json:"detail,omitempty"`
	Instance string `json:"instance,omitempty"`
	// RetryAfter, when set, is also sent as the Retry-After header (seconds).
	RetryAfter int `json:"-"`
}

// New returns a problem of the given short type name (e.g. "insufficient-funds").
func New(status int, typ, title, detail string) Details {
	return Details{Type: TypeBase + typ, Title: title, Status: status, Detail: detail}
}

// Write sends p as the response.
func Write(w http.ResponseWriter, p Details) {
	if p.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(p.RetryAfter))
	}
	w.Header().Set("Content-Type", ContentType)
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}
