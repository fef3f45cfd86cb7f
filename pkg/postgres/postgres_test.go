package postgres

import (
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

func TestRedactURL(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"postgres://u:secret@h:5432/db?sslmode=disable": "postgres://u:REDACTED@h:5432/db?sslmode=disable",
		"postgres://u@h/db":                             "postgres://u@h/db",
		"host=db password=secret":                       "REDACTED",
		"postgres://u:se%2Fcret@h/db":                   "postgres://u:REDACTED@h/db",
	}
	for in, want := range tests {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestClass(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  error
		want string
	}{
		{nil, ""},
		{errors.New("connection refused"), ""},
		{&pgconn.PgError{Code: "22003"}, ClassDataException},
		{fmt.Errorf("update wallet: %w", &pgconn.PgError{Code: "23505"}), ClassIntegrityConstraintViolation},
		{&pgconn.PgError{Code: "40001"}, "40"},
		{&pgconn.PgError{}, ""},
	}
	for _, tt := range tests {
		if got := Class(tt.err); got != tt.want {
			t.Errorf("Class(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}
