package envconfig

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func reader(env map[string]string) *Reader {
	return New(func(k string) string { return env[k] })
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
		want := def
		want.HTTP = DefaultHTTPServer
		if diff := cmp.Diff(want, got); diff != "" || r.Err() != nil {
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
