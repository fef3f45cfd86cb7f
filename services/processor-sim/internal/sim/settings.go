package sim

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"
)

// API names one of the processor's two HTTP APIs.
type API string

// The two APIs: the one the processor offers today and the one we propose.
const (
	APIAsIs     API = "as-is"
	APIProposed API = "proposed"
)

// Valid reports whether a is a known API.
func (a API) Valid() bool { return a == APIAsIs || a == APIProposed }

// Duration is a time.Duration that reads and writes JSON as a Go duration
// string ("50ms"), so /sim/config speaks the same language as the env vars.
type Duration time.Duration

// MarshalJSON writes the duration as a string such as "250ms".
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads a duration string such as "250ms" or "20s".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want a duration string such as \"50ms\", got %s", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("want a duration string such as \"50ms\", got %q", s)
	}
	*d = Duration(v)
	return nil
}

// Settings are the simulator's knobs that may change while it runs
// (GET/PUT /sim/config). Rates are probabilities in [0,1] drawn per call.
type Settings struct {
	// API selects the API: in as-is mode the /v2 routes answer 404.
	API API `json:"api"`
	// RateLimit is the sustained number of payment calls per second.
	RateLimit float64 `json:"rate_limit"`
	// RateBurst is how many calls may arrive at once before the limit bites.
	RateBurst int `json:"rate_burst"`
	// LatencyP50 and LatencyP99 fit the log-normal latency distribution;
	// both zero means no added latency.
	LatencyP50 Duration `json:"latency_p50"`
	LatencyP99 Duration `json:"latency_p99"`
	// DeclineRate is the share of executions that are declined instead.
	DeclineRate float64 `json:"decline_rate"`
	// ErrorRate is the share of calls answered 500 without executing.
	ErrorRate float64 `json:"error_rate"`
	// LostResponseRate is the share of calls whose connection is closed
	// without a reply after the payment was settled.
	LostResponseRate float64 `json:"lost_response_rate"`
}

// DefaultBurst is the burst used when none is given: one second's worth of
// calls at limit, at least 1.
func DefaultBurst(limit float64) int {
	if !(limit >= 1) || math.IsInf(limit, 1) {
		return 1
	}
	if limit > math.MaxInt32 {
		return math.MaxInt32
	}
	return int(math.Ceil(limit))
}

// Validate reports every problem with s at once.
func (s Settings) Validate() error {
	var errs []error
	if !s.API.Valid() {
		errs = append(errs, fmt.Errorf("api %q: want %q or %q", s.API, APIProposed, APIAsIs))
	}
	if !(s.RateLimit > 0) || math.IsInf(s.RateLimit, 0) {
		errs = append(errs, fmt.Errorf("rate_limit %v: must be a number > 0 (calls per second)", s.RateLimit))
	}
	if s.RateBurst < 1 {
		errs = append(errs, fmt.Errorf("rate_burst %d: must be >= 1", s.RateBurst))
	}
	p50, p99 := time.Duration(s.LatencyP50), time.Duration(s.LatencyP99)
	switch {
	case p50 < 0 || p99 < 0:
		errs = append(errs, fmt.Errorf("latency_p50 %v, latency_p99 %v: must not be negative", p50, p99))
	case p50 == 0 && p99 > 0:
		errs = append(errs, fmt.Errorf("latency_p50 0 with latency_p99 %v: set latency_p50 > 0, or both to 0 for no latency", p99))
	case p99 < p50:
		errs = append(errs, fmt.Errorf("latency_p99 %v is below latency_p50 %v", p99, p50))
	}
	for _, r := range []struct {
		name string
		v    float64
	}{
		{"decline_rate", s.DeclineRate},
		{"error_rate", s.ErrorRate},
		{"lost_response_rate", s.LostResponseRate},
	} {
		if !(r.v >= 0 && r.v <= 1) {
			errs = append(errs, fmt.Errorf("%s %v: must be within [0,1]", r.name, r.v))
		}
	}
	return errors.Join(errs...)
}

// Patch is a partial change to Settings; nil fields keep their value.
type Patch struct {
	API              *API      `json:"api"`
	RateLimit        *float64  `json:"rate_limit"`
	RateBurst        *int      `json:"rate_burst"`
	LatencyP50       *Duration `json:"latency_p50"`
	LatencyP99       *Duration `json:"latency_p99"`
	DeclineRate      *float64  `json:"decline_rate"`
	ErrorRate        *float64  `json:"error_rate"`
	LostResponseRate *float64  `json:"lost_response_rate"`
}

// Apply returns s changed by p. A new rate_limit without a rate_burst
// resets the burst to DefaultBurst of the new limit, so that lowering the
// limit is not undone by an old, larger burst.
func (s Settings) Apply(p Patch) Settings {
	if p.API != nil {
		s.API = *p.API
	}
	if p.RateLimit != nil {
		s.RateLimit = *p.RateLimit
		s.RateBurst = DefaultBurst(s.RateLimit)
	}
	if p.RateBurst != nil {
		s.RateBurst = *p.RateBurst
	}
	if p.LatencyP50 != nil {
		s.LatencyP50 = *p.LatencyP50
	}
	if p.LatencyP99 != nil {
		s.LatencyP99 = *p.LatencyP99
	}
	if p.DeclineRate != nil {
		s.DeclineRate = *p.DeclineRate
	}
	if p.ErrorRate != nil {
		s.ErrorRate = *p.ErrorRate
	}
	if p.LostResponseRate != nil {
		s.LostResponseRate = *p.LostResponseRate
	}
	return s
}
