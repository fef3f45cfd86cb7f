package envconfig

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestReader(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"N": "7", "BAD_N": "x", "D": "250ms", "BAD_D": "3", "B": "true",
		"L": "a, b,,c", "S": "secret-value",
	}
	r := New(func(k string) string { return env[k] })
	if got := r.Int("N", 1); got != 7 {
		t.Errorf("Int = %d", got)
	}
	if got := r.Int("MISSING", 3); got != 3 {
		t.Errorf("Int default = %d", got)
	}
	if got := r.Duration("D", 0); got != 250*time.Millisecond {
		t.Errorf("Duration = %v", got)
	}
	if got := r.Bool("B", false); !got {
		t.Error("Bool = false")
	}
	if got := strings.Join(r.List("L", nil), "|"); got != "a|b|c" {
		t.Errorf("List = %q", got)
	}
	s := r.Secret("S", "")
	if fmt.Sprint(s) != "REDACTED" || s.Reveal() != "secret-value" {
		t.Errorf("Secret prints %q", fmt.Sprint(s))
	}
	if r.Err() != nil {
		t.Fatalf("unexpected error: %v", r.Err())
	}
	r.Int("BAD_N", 0)
	r.Duration("BAD_D", 0)
	err := r.Err()
	if err == nil || !strings.Contains(err.Error(), "BAD_N") || !strings.Contains(err.Error(), "BAD_D") {
		t.Fatalf("want both errors reported, got %v", err)
	}
}

func TestRangeReaders(t *testing.T) {
	t.Parallel()
	env := map[string]string{"N": "7", "BIG": "70", "D": "2s", "ZERO": "0s", "NEG": "-1s"}
	r := New(func(k string) string { return env[k] })
	if got := r.IntIn("N", 1, 1, 10); got != 7 {
		t.Errorf("IntIn = %d", got)
	}
	if got := r.PositiveDuration("D", time.Second); got != 2*time.Second {
		t.Errorf("PositiveDuration = %v", got)
	}
	if r.Err() != nil {
		t.Fatalf("unexpected error: %v", r.Err())
	}
	r.IntIn("BIG", 1, 1, 10)
	r.PositiveDuration("ZERO", time.Second)
	r.PositiveDuration("NEG", time.Second)
	err := r.Err()
	for _, want := range []string{"BIG=70: want 1 to 10", "ZERO=0s: want a positive duration", "NEG=-1s"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
}
