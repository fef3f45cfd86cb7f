package cli_test

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"

	"github.com/finsvc/finance/pkg/entry"
	"github.com/finsvc/finance/pkg/pgtest"
	"github.com/finsvc/finance/services/financectl/internal/cli"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

type result struct {
	code           int
	stdout, stderr string
}

// run runs financectl in-process with exactly env as its environment.
func run(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := cli.Run(context.Background(), args, func(k string) string { return env[k] }, &stdout, &stderr)
	code := entry.Exit("financectl", err, &stderr)
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want string // the first line of stderr contains it
	}{
		{"no command", nil, nil, "financectl: missing command"},
		{"unknown command", nil, []string{"frobnicate"}, `financectl: unknown command "frobnicate"`},
		{"help for unknown command", nil, []string{"help", "nope"}, `unknown command "nope"`},
		{"unknown flag", nil, []string{"seed", "--bogus"}, "financectl: seed: flag provided but not defined: -bogus"},
		{"bad flag value", nil, []string{"seed", "--users", "many"}, `financectl: seed: invalid value "many" for flag -users`},
		{"seed without mode", nil, []string{"seed"}, "financectl: seed: want --demo or --users N"},
		{"seed zero users", nil, []string{"seed", "--users", "0"}, "user count 0 must be at least 1"},
		{"seed negative balance", nil, []string{"seed", "--users", "1", "--balance", "-5"}, "balance -5 must not be negative"},
		{"seed start id without users", nil, []string{"seed", "--demo", "--start-id", "5"}, "need --users"},
		{"seed history without users", nil, []string{"seed", "--demo", "--payments-per-user", "20"}, "need --users"},
		{"seed zero payments per user", nil, []string{"seed", "--users", "1", "--payments-per-user", "-1"}, "payments per user -1 must be from 1"},
		{"seed positional", nil, []string{"seed", "--demo", "extra"}, `unexpected argument "extra"`},
		{"migrate unknown action", nil, []string{"migrate", "down"}, `unknown action "down"`},
		{"migrate two actions", nil, []string{"migrate", "up", "up"}, `unexpected argument "up"`},
		{"createdb argument", nil, []string{"createdb", "x"}, `unexpected argument "x"`},
		{"token without user", nil, []string{"token"}, "financectl: token: --user N is required"},
		{"token negative ttl", nil, []string{"token", "--user", "1", "--ttl", "-1h"}, "--ttl -1h0m0s must be positive"},
		{"token bad ttl", nil, []string{"token", "--user", "1", "--ttl", "soon"}, `invalid value "soon" for flag -ttl`},
		{"topics without action", nil, []string{"topics"}, "missing action"},
		{"topics unknown action", nil, []string{"topics", "delete"}, `unknown action "delete"`},
		{"topics zero partitions", nil, []string{"topics", "create", "--partitions", "0"}, "--partitions 0 must be at least 1"},
		{"topics flag after action", nil, []string{"topics", "create", "--nope"}, "flag provided but not defined: -nope"},
		{"version argument", nil, []string{"version", "x"}, `unexpected argument "x"`},
		{"bad environment", map[string]string{"KAFKA_PARTITIONS": "many", "LOG_LEVEL": "loud"}, []string{"version"},
			`financectl: version: bad environment: KAFKA_PARTITIONS="many": not an integer; LOG_LEVEL="loud"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := run(t, tt.env, tt.args...)
			if got.code != exitUsage {
				t.Errorf("exit code = %d, want %d; stderr:\n%s", got.code, exitUsage, got.stderr)
			}
			first, _, _ := strings.Cut(got.stderr, "\n")
			if !strings.Contains(first, tt.want) {
				t.Errorf("first stderr line = %q, want it to contain %q", first, tt.want)
			}
			if tt.env == nil && !strings.Contains(got.stderr, "usage: financectl") {
				t.Errorf("stderr has no usage:\n%s", got.stderr)
			}
			if got.stdout != "" {
				t.Errorf("stdout = %q, want nothing", got.stdout)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"help"}, "usage: financectl <command>"},
		{[]string{"--help"}, "usage: financectl <command>"},
		{[]string{"help", "seed"}, "usage: financectl seed --demo | --users N"},
		{[]string{"seed", "-h"}, "-start-id S"},
		{[]string{"topics", "--help"}, "usage: financectl topics create"},
		{[]string{"version"}, "financectl "},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			t.Parallel()
			got := run(t, nil, tt.args...)
			if got.code != exitOK {
				t.Fatalf("exit code = %d; stderr:\n%s", got.code, got.stderr)
			}
			if !strings.Contains(got.stdout, tt.want) {
				t.Errorf("stdout does not contain %q:\n%s", tt.want, got.stdout)
			}
		})
	}
}

// The exit statuses pkg/entry gives financectl's errors.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)
