package envconfig

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestLoadHTTPServer(t *testing.T) {
	t.Parallel()
	t.Run("defaults", func(t *testing.T) {
		t.Parallel()
		r := reader(nil)
		if diff := cmp.Diff(DefaultHTTPServer, LoadHTTPServer(r)); diff != "" || r.Err() != nil {
			t.Fatalf("LoadHTTPServer (-want +got):\n%s\nerr: %v", diff, r.Err())
		}
		if got := DefaultHTTPServer.HeaderReadLimit(); got != 2*DefaultHTTPServer.MaxHeaderBytes {
			t.Errorf("HeaderReadLimit = %d", got)
		}
	})
	t.Run("set", func(t *testing.T) {
		t.Parallel()
		r := reader(map[string]string{
			"HTTP_READ_HEADER_TIMEOUT": "1s", "HTTP_READ_TIMEOUT": "2s", "HTTP_WRITE_TIMEOUT": "3s",
			"HTTP_IDLE_TIMEOUT": "4s", "HTTP_MAX_HEADER_BYTES": "8192",
		})
		want := HTTPServer{time.Second, 2 * time.Second, 3 * time.Second, 4 * time.Second, 8192}
		if diff := cmp.Diff(want, LoadOps(r, Ops{LogLevel: "info", ShutdownTimeout: time.Second}).HTTP); diff != "" || r.Err() != nil {
			t.Fatalf("LoadOps().HTTP (-want +got):\n%s\nerr: %v", diff, r.Err())
		}
	})
	t.Run("bad values", func(t *testing.T) {
		t.Parallel()
		r := reader(map[string]string{
			"HTTP_READ_HEADER_TIMEOUT": "40s", "HTTP_WRITE_TIMEOUT": "0s", "HTTP_IDLE_TIMEOUT": "x",
			"HTTP_MAX_HEADER_BYTES": "10",
		})
		LoadHTTPServer(r)
		err := r.Err()
		for _, want := range []string{
			"HTTP_READ_HEADER_TIMEOUT=40s: must not exceed HTTP_READ_TIMEOUT=30s", "HTTP_WRITE_TIMEOUT=0s",
			`HTTP_IDLE_TIMEOUT="x"`, "HTTP_MAX_HEADER_BYTES=10: want 1024 to 1048576",
		} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("error %v lacks %q", err, want)
			}
		}
	})
}
