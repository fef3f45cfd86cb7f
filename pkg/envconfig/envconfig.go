// Package envconfig reads typed settings from the environment. Each service
// keeps one loadConfig(getenv) that uses a Reader and reports every problem at
// once through Err. The settings every service shares are read once and
// embedded by each service's config: Kafka and the ops settings (log level,
// ops address, shutdown timeout) by LoadKafka and LoadOps (shared.go), the
// database's by postgres.LoadConfig.
package envconfig

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Secret is a string that never prints: it logs and formats as REDACTED.
type Secret string

// String implements fmt.Stringer.
func (Secret) String() string { return "REDACTED" }

// MarshalText keeps secrets out of JSON logs.
func (Secret) MarshalText() ([]byte, error) { return []byte("REDACTED"), nil }

// Reveal returns the secret's value for the code that needs it.
func (s Secret) Reveal() string { return string(s) }

// Reader reads settings through getenv and collects parse errors and the
// deprecated names in use.
type Reader struct {
	getenv     func(string) string
	errs       []error
	aliases    map[string]string // new name -> the old name whose value it takes
	deprecated []string
}

// New returns a Reader over getenv (os.Getenv in main, a map in tests).
func New(getenv func(string) string) *Reader {
	return &Reader{getenv: getenv}
}

// Rename accepts old as a deprecated alias of key for one release: when key
// is unset and old is set, reads of key get old's value. Either way a set
// old name is recorded for Deprecated, so that the service warns about it.
// Call it before reading key.
func (r *Reader) Rename(old, key string) {
	if strings.TrimSpace(r.getenv(old)) == "" {
		return
	}
	if strings.TrimSpace(r.get(key)) != "" {
		r.deprecated = append(r.deprecated, fmt.Sprintf("%s is deprecated and ignored: %s is set", old, key))
		return
	}
	if r.aliases == nil {
		r.aliases = make(map[string]string)
	}
	r.aliases[key] = old
	r.deprecated = append(r.deprecated, fmt.Sprintf("%s is deprecated: rename it %s (the old name goes in the next release)", old, key))
}

// Deprecated returns one message per deprecated name the environment uses.
func (r *Reader) Deprecated() []string { return r.deprecated }

// get returns key's value, or its deprecated alias's.
func (r *Reader) get(key string) string {
	if v := r.getenv(key); strings.TrimSpace(v) != "" {
		return v
	}
	if old, ok := r.aliases[key]; ok {
		return r.getenv(old)
	}
	return ""
}

// Err returns every problem seen so far, joined, or nil.
func (r *Reader) Err() error { return errors.Join(r.errs...) }

// Fail records a validation problem found by the caller.
func (r *Reader) Fail(format string, args ...any) {
	r.errs = append(r.errs, fmt.Errorf(format, args...))
}

// String returns the value of key, or def when unset or empty.
func (r *Reader) String(key, def string) string {
	if v := strings.TrimSpace(r.get(key)); v != "" {
		return v
	}
	return def
}

// Secret returns the value of key as a Secret, or def.
func (r *Reader) Secret(key string, def Secret) Secret {
	if v := r.get(key); v != "" {
		return Secret(v)
	}
	return def
}

// Int returns key parsed as an integer, or def.
func (r *Reader) Int(key string, def int) int {
	v := strings.TrimSpace(r.get(key))
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		r.errs = append(r.errs, fmt.Errorf("%s=%q: not an integer", key, v))
		return def
	}
	return n
}

// Float returns key parsed as a float, or def.
func (r *Reader) Float(key string, def float64) float64 {
	v := strings.TrimSpace(r.get(key))
	if v == "" {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		r.errs = append(r.errs, fmt.Errorf("%s=%q: not a number", key, v))
		return def
	}
	return f
}

// Bool returns key parsed as a boolean (1/0, true/false), or def.
func (r *Reader) Bool(key string, def bool) bool {
	v := strings.TrimSpace(r.get(key))
	if v == "" {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		r.errs = append(r.errs, fmt.Errorf("%s=%q: not a boolean", key, v))
		return def
	}
	return b
}

// Duration returns key parsed as a Go duration (e.g. 250ms, 5s), or def.
func (r *Reader) Duration(key string, def time.Duration) time.Duration {
	v := strings.TrimSpace(r.get(key))
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		r.errs = append(r.errs, fmt.Errorf("%s=%q: not a duration (e.g. 250ms, 5s)", key, v))
		return def
	}
	return d
}

// List returns key split on commas, or def.
func (r *Reader) List(key string, def []string) []string {
	v := strings.TrimSpace(r.get(key))
	if v == "" {
		return def
	}
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// IntIn returns key parsed as an integer, or def, recording an error when it
// is outside min..max.
func (r *Reader) IntIn(key string, def, min, max int) int {
	n := r.Int(key, def)
	if n < min || n > max {
		r.Fail("%s=%d: want %d to %d", key, n, min, max)
	}
	return n
}

// PositiveDuration returns key parsed as a duration, or def, recording an
// error unless it is positive.
func (r *Reader) PositiveDuration(key string, def time.Duration) time.Duration {
	d := r.Duration(key, def)
	if d <= 0 {
		r.Fail("%s=%s: want a positive duration", key, d)
	}
	return d
}
