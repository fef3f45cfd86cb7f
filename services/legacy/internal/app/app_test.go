package app_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/finsvc/finance/pkg/entry"
	"github.com/finsvc/finance/pkg/pgtest"
	"github.com/finsvc/finance/pkg/testkit"
	"github.com/finsvc/finance/services/legacy/internal/app"
	"github.com/finsvc/finance/services/legacy/internal/dbtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestRunRejectsBadInvocations(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"unknown command", []string{"frobnicate"}, nil, `unknown command "frobnicate"`},
		{"bad duration", []string{"serve"}, map[string]string{"LEGACY_PROCESSOR_TIMEOUT": "soon"}, "LEGACY_PROCESSOR_TIMEOUT"},
		{"every problem at once", nil, map[string]string{"HTTP_ADDR": "nope", "LOG_LEVEL": "loud"}, "HTTP_ADDR"},
		{"short secret", nil, map[string]string{"AUTH_JWT_SECRET": "short"}, "AUTH_JWT_SECRET"},
		{"seed without work", []string{"seed"}, nil, "nothing to seed"},
		{"seed bad flag", []string{"seed", "--userz", "3"}, nil, "userz"},
		{"serve with args", []string{"serve", "x"}, nil, "no arguments"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := app.Run(context.Background(), tc.args, env(tc.env), &bytes.Buffer{}, io.Discard)
			var ue *entry.UsageError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Run(%q) = %v, want a usage error mentioning %q", tc.args, err, tc.want)
			}
		})
	}
	err := app.Run(context.Background(), nil, env(map[string]string{"HTTP_ADDR": "nope", "LOG_LEVEL": "loud"}), &bytes.Buffer{}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "LOG_LEVEL") {
		t.Errorf("every problem at once: %v lacks LOG_LEVEL", err)
	}
}

func TestServeRefusesWithoutSecret(t *testing.T) {
	t.Parallel()
	err := app.Run(context.Background(), nil, env(map[string]string{"DATABASE_URL": "postgres://127.0.0.1:1/x"}), &bytes.Buffer{}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "AUTH_JWT_SECRET") {
		t.Errorf("serve without a secret = %v", err)
	}
}

func TestMigrateSeedServe(t *testing.T) {
	t.Parallel()
	vars := map[string]string{
		"DATABASE_URL":     dbtest.NewDB(t),
		"HTTP_ADDR":        "127.0.0.1:0",
		"FINANCE_DEV_MODE": "true",
	}
	e := env(vars)
	var out bytes.Buffer
	if err := app.Run(context.Background(), []string{"migrate"}, e, &out, io.Discard); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	if err := app.Run(context.Background(), []string{"seed", "--demo", "--users", "3", "--start-id", "50"}, e, &out, io.Discard); err != nil {
		t.Fatalf("seed: %v", err)
	}
	if !strings.Contains(out.String(), "users created 4, skipped 0") {
		t.Errorf("seed output: %s", out.String())
	}

	srv := testkit.StartServer(t, app.Run, nil, vars)
	resp, err := http.Get("http://" + srv.Addr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("/readyz = %d", resp.StatusCode)
	}
	if err := srv.Stop(); err != nil {
		t.Errorf("serve after cancel: %v", err)
	}
}
