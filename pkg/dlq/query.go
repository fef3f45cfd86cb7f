package dlq

import (
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// ParseFilter reads a Filter from query parameters (topic, payment_id,
// user_id, since, until, error, limit), appending every problem to
// problems, each a sentence for the caller; parameters outside allowed are
// problems too, and an empty value is an absent one. The gateway's admin
// routes and its operator console read their filters with it.
func ParseFilter(q url.Values, allowed []string, problems *[]string) Filter {
	var unknown []string
	for k := range q {
		ok := false
		for _, a := range allowed {
			ok = ok || k == a
		}
		if !ok {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	for _, k := range unknown {
		*problems = append(*problems, fmt.Sprintf("unknown query parameter %q (allowed: %s)", k, strings.Join(allowed, ", ")))
	}
	for k, vs := range q {
		if len(vs) > 1 {
			*problems = append(*problems, fmt.Sprintf("query parameter %q is given %d times", k, len(vs)))
		}
	}
	f := Filter{Topic: q.Get("topic"), Error: q.Get("error")}
	for _, p := range [][2]string{{"topic", f.Topic}, {"error", f.Error}} {
		name, v := p[0], p[1]
		// A replay stores its filter as jsonb, which holds neither NUL nor
		// invalid UTF-8; no topic or error text has them either.
		if strings.ContainsRune(v, 0) || !utf8.ValidString(v) {
			*problems = append(*problems, fmt.Sprintf("%s must be UTF-8 text without NUL (U+0000), got %q", name, v))
		}
	}
	id := func(name string) int64 {
		v := q.Get(name)
		if v == "" {
			return 0
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			*problems = append(*problems, fmt.Sprintf("%s must be a positive integer, got %q", name, v))
		}
		return n
	}
	f.PaymentID, f.UserID = id("payment_id"), id("user_id")
	when := func(name string) time.Time {
		v := q.Get(name)
		if v == "" {
			return time.Time{}
		}
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			*problems = append(*problems, fmt.Sprintf("%s must be an RFC 3339 time such as 2026-05-04T10:00:00Z, got %q", name, v))
		}
		return t
	}
	f.Since, f.Until = when("since"), when("until")
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxLimit {
			*problems = append(*problems, fmt.Sprintf("limit must be an integer from 1 to %d, got %q", MaxLimit, v))
		}
		f.Limit = n
	}
	if len(*problems) == 0 {
		if err := f.Validate(); err != nil {
			*problems = append(*problems, strings.ReplaceAll(err.Error(), "\n", "; "))
		}
	}
	return f
}

// ParseBool reads name from q: "" and "false" are false, "true" is true,
// anything else a problem.
func ParseBool(q url.Values, name string, problems *[]string) bool {
	switch v := q.Get(name); v {
	case "", "false":
		return false
	case "true":
		return true
	default:
		*problems = append(*problems, fmt.Sprintf("%s must be true or false, got %q", name, v))
		return false
	}
}
