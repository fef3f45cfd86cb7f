package envconfig

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func reader(env map[string]string) *Reader {
	return New(func(k string) string { return env[k] })
}

func TestLoadPostgres(t *testing.T) {
	t.Parallel()
	t.Run("defaults", func(t *testing.T) {
		t.Parallel()
		r := reader(nil)
		got := LoadPostgres(r, Postgres{MaxConns: 16})
		want := Postgres{URL: DefaultDatabaseURL, MaxConns: 16}
		if diff := cmp.Diff(want, got); diff != "" || r.Err() != nil {
			t.Fatalf("LoadPostgres (-want +got):\n%s\nerr: %v", diff, r.Err())
		}
	})
	t.Run("old pool name is an alias with a warning", func(t *testing.T) {
		t.Parallel()
		r := reader(map[string]string{"GATEWAY_DB_MAX_CONNS": "7"})
		r.Rename("GATEWAY_DB_MAX_CONNS", "DATABASE_MAX_CONNS")
		if got := LoadPostgres(r, Postgres{MaxConns: 20}); got.MaxConns != 7 {
			t.Fatalf("MaxConns = %d, want 7 from the deprecated name", got.MaxConns)
		}
		if d := r.Deprecated(); len(d) != 1 || !strings.Contains(d[0], "GATEWAY_DB_MAX_CONNS is deprecated") {
			t.Fatalf("Deprecated = %q", d)
		}
	})
	t.Run("new name wins over old", func(t *testing.T) {
		t.Parallel()
		r := reader(map[string]string{"GATEWAY_DB_MAX_CONNS": "7", "DATABASE_MAX_CONNS": "9"})
		r.Rename("GATEWAY_DB_MAX_CONNS", "DATABASE_MAX_CONNS")
		if got := LoadPostgres(r, Postgres{MaxConns: 20}); got.MaxConns != 9 {
			t.Fatalf("MaxConns = %d, want 9", got.MaxConns)
		}
		if d := r.Deprecated(); len(d) != 1 || !strings.Contains(d[0], "ignored") {
			t.Fatalf("Deprecated = %q", d)
		}
	})
	t.Run("bad values, all reported", func(t *testing.T) {
		t.Parallel()
		r := reader(map[string]string{"DATABASE_URL": "postgres://u:pw@host:notaport/db", "DATABASE_MAX_CONNS": "0"})
		LoadPostgres(r, Postgres{MaxConns: 20})
		err := r.Err()
		if err == nil || !strings.Contains(err.Error(), "DATABASE_URL") || !strings.Contains(err.Error(), "DATABASE_MAX_CONNS=0") {
			t.Fatalf("err = %v, want both problems", err)
		}
		if strings.Contains(err.Error(), "pw") {
			t.Fatalf("err leaks the password: %v", err)
		}
	})
}

func TestLoadKafka(t *testing.T) {
	t.Parallel()
	if got := LoadKafka(reader(nil), true); !cmp.Equal(got.Brokers, DefaultKafkaBrokers) {
		t.Errorf("required default = %q", got.Brokers)
	}
	if got := LoadKafka(reader(nil), false); got.Brokers != nil {
		t.Errorf("optional default = %q, want none", got.Brokers)
	}
	r := reader(map[string]string{"KAFKA_BROKERS": " , "})
	LoadKafka(r, true)
	if r.Err() == nil {
		t.Error("an empty broker list is accepted")
	}
}

func TestLoadOps(t *testing.T) {
	t.Parallel()
	def := Ops{LogLevel: "info", Addr: ":9101", ShutdownTimeout: 10 * time.Second}
	t.Run("defaults", func(t *testing.T) {
		t.Parallel()
		r := reader(nil)
		got := LoadOps(r, def)
		if diff := cmp.Diff(def, got); diff != "" || r.Err() != nil {
			t.Fatalf("LoadOps (-want +got):\n%s\nerr: %v", diff, r.Err())
		}
	})
	t.Run("SHUTDOWN_GRACE still works, with a warning", func(t *testing.T) {
		t.Parallel()
		got := LoadOps(reader(map[string]string{"SHUTDOWN_GRACE": "3s", "LOG_LEVEL": "WARN"}), def)
		if got.ShutdownTimeout != 3*time.Second || got.LogLevel != "warn" {
			t.Fatalf("got %+v", got)
		}
		if len(got.Deprecated) != 1 || !strings.Contains(got.Deprecated[0], "SHUTDOWN_GRACE") {
			t.Fatalf("Deprecated = %q", got.Deprecated)
		}
	})
	t.Run("no ops listener: OPS_ADDR is not read", func(t *testing.T) {
		t.Parallel()
		got := LoadOps(reader(map[string]string{"OPS_ADDR": ":1"}), Ops{LogLevel: "info", ShutdownTimeout: time.Second})
		if got.Addr != "" {
			t.Fatalf("Addr = %q", got.Addr)
		}
	})
	t.Run("bad values", func(t *testing.T) {
		t.Parallel()
		r := reader(map[string]string{"LOG_LEVEL": "loud", "SHUTDOWN_TIMEOUT": "-1s"})
		LoadOps(r, def)
		err := r.Err()
		if err == nil || !strings.Contains(err.Error(), `LOG_LEVEL="loud"`) || !strings.Contains(err.Error(), "SHUTDOWN_TIMEOUT=-1s") {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestLogStartMasksSecretsAndWarns(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&buf, nil))
	p := Postgres{URL: "postgres://u:hunter2@db/finance", MaxConns: 3}
	LogStart(context.Background(), logger, p, []string{"OLD is deprecated"})
	out := buf.String()
	if strings.Contains(out, "hunter2") {
		t.Fatalf("the password is logged: %s", out)
	}
	for _, want := range []string{`"msg":"starting"`, `"max_conns":3`, `"level":"WARN","msg":"OLD is deprecated"`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s:\n%s", want, out)
		}
	}
}
