package postgres

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/finsvc/finance/pkg/envconfig"
)

func envReader(env map[string]string) *envconfig.Reader {
	return envconfig.New(func(k string) string { return env[k] })
}

func TestLoadConfig(t *testing.T) {
	t.Parallel()
	t.Run("defaults", func(t *testing.T) {
		t.Parallel()
		r := envReader(nil)
		got := LoadConfig(r, Config{MaxConns: 16})
		want := Config{URL: DefaultURL, MaxConns: 16}
		if diff := cmp.Diff(want, got); diff != "" || r.Err() != nil {
			t.Fatalf("LoadPostgres (-want +got):\n%s\nerr: %v", diff, r.Err())
		}
	})
	t.Run("old pool name is an alias with a warning", func(t *testing.T) {
		t.Parallel()
		r := envReader(map[string]string{"GATEWAY_DB_MAX_CONNS": "7"})
		r.Rename("GATEWAY_DB_MAX_CONNS", "DATABASE_MAX_CONNS")
		if got := LoadConfig(r, Config{MaxConns: 20}); got.MaxConns != 7 {
			t.Fatalf("MaxConns = %d, want 7 from the deprecated name", got.MaxConns)
		}
		if d := r.Deprecated(); len(d) != 1 || !strings.Contains(d[0], "GATEWAY_DB_MAX_CONNS is deprecated") {
			t.Fatalf("Deprecated = %q", d)
		}
	})
	t.Run("new name wins over old", func(t *testing.T) {
		t.Parallel()
		r := envReader(map[string]string{"GATEWAY_DB_MAX_CONNS": "7", "DATABASE_MAX_CONNS": "9"})
		r.Rename("GATEWAY_DB_MAX_CONNS", "DATABASE_MAX_CONNS")
		if got := LoadConfig(r, Config{MaxConns: 20}); got.MaxConns != 9 {
			t.Fatalf("MaxConns = %d, want 9", got.MaxConns)
		}
		if d := r.Deprecated(); len(d) != 1 || !strings.Contains(d[0], "ignored") {
			t.Fatalf("Deprecated = %q", d)
		}
	})
	t.Run("bad values, all reported", func(t *testing.T) {
		t.Parallel()
		r := envReader(map[string]string{"DATABASE_URL": "postgres://u:pw@host:notaport/db", "DATABASE_MAX_CONNS": "0"})
		LoadConfig(r, Config{MaxConns: 20})
		err := r.Err()
		if err == nil || !strings.Contains(err.Error(), "DATABASE_URL") || !strings.Contains(err.Error(), "DATABASE_MAX_CONNS=0") {
			t.Fatalf("err = %v, want both problems", err)
		}
		if strings.Contains(err.Error(), "pw") {
			t.Fatalf("err leaks the password: %v", err)
		}
	})
}

func TestConfigLogsRedacted(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("starting", "postgres", Config{URL: "postgres://u:hunter2@db/finance", MaxConns: 3})
	if out := buf.String(); strings.Contains(out, "hunter2") || !strings.Contains(out, `"max_conns":3`) {
		t.Fatalf("logged: %s", out)
	}
}
