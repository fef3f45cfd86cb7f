package obs

import (
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/finsvc/finance/pkg/envconfig"
)

// BenchmarkServerTimeouts is the CPU cost of one keep-alive request over
// loopback to a handler that writes "ok", through a server made by
// NewServer (the four timeouts and the header limit set: deadlines renewed
// on every request) and through a bare http.Server without them.
// docs/security.md reports it:
//
//	go test -run '^$' -bench BenchmarkServerTimeouts -benchmem ./pkg/obs/
func BenchmarkServerTimeouts(b *testing.B) {
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	for _, bc := range []struct {
		name string
		srv  func() *http.Server
	}{
		{"timeouts=none", func() *http.Server { return &http.Server{Handler: h} }}, //nolint:gosec // the baseline
		{"timeouts=default", func() *http.Server { return NewServer(h, envconfig.DefaultHTTPServer) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			srv := bc.srv()
			go func() { _ = srv.Serve(ln) }()
			defer srv.Close()
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}, Timeout: 10 * time.Second}
			url := "http://" + ln.Addr().String() + "/"
			b.ReportAllocs()
			for b.Loop() {
				resp, err := client.Get(url)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
}
