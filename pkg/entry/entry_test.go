package entry

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"testing"
)

func TestExit(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		err        error
		wantCode   int
		wantStderr string
	}{
		{"success", nil, 0, ""},
		{"help", fmt.Errorf("parse: %w", flag.ErrHelp), 0, ""},
		{"failure", errors.New("database down"), 1, "svc: database down\n"},
		{"usage", &UsageError{Err: errors.New("unknown command \"x\""), Usage: "usage: svc run\n"}, 2,
			"svc: unknown command \"x\"\nusage: svc run\n"},
		{"wrapped usage", fmt.Errorf("seed: %w", Usagef("--users: want > 0")), 2, "svc: seed: --users: want > 0\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var stderr bytes.Buffer
			if got := Exit("svc", tc.err, &stderr); got != tc.wantCode {
				t.Errorf("Exit = %d, want %d", got, tc.wantCode)
			}
			if stderr.String() != tc.wantStderr {
				t.Errorf("stderr = %q, want %q", stderr.String(), tc.wantStderr)
			}
		})
	}
}
