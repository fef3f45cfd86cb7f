package httpapi

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/finsvc/finance/pkg/auth"
	"github.com/finsvc/finance/pkg/obs"
	"github.com/finsvc/finance/pkg/problem"
	"github.com/finsvc/finance/services/gateway/internal/store"
)

// TestRecoverPanics is an internal test: it needs a route that panics,
// which the real API has none of.
func TestRecoverPanics(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	a := newAPI(Config{
		Logger:   slog.New(slog.NewJSONHandler(&logs, nil)),
		Store:    store.New(nil), // never reached
		Verifier: auth.NewVerifier([]byte("unused-secret-0123456789abcdefghijkl")),
		Registry: obs.NewRegistry(),
	})
	a.engine.GET("/boom", func(*gin.Context) { panic("kaboom") })

	w := httptest.NewRecorder()
	a.engine.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/boom", nil))
	if w.Code != http.StatusInternalServerError || w.Header().Get("Content-Type") != problem.ContentType ||
		!strings.Contains(w.Body.String(), problem.TypeBase+typeInternal) {
		t.Errorf("panic answered %d %v %s", w.Code, w.Header(), w.Body.String())
	}
	if strings.Contains(w.Body.String(), "kaboom") {
		t.Errorf("the panic value leaked to the client: %s", w.Body.String())
	}
	// One line for the request, with the panic and its stack on it.
	if n := strings.Count(strings.TrimSpace(logs.String()), "\n") + 1; n != 1 {
		t.Errorf("%d log lines for one request, want 1:\n%s", n, logs.String())
	}
	for _, want := range []string{`"msg":"http request"`, `"level":"ERROR"`, `"panic":"kaboom"`, `"stack":"goroutine `, `"status":500`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("logs lack %s:\n%s", want, logs.String())
		}
	}

	// The server is still serving.
	w = httptest.NewRecorder()
	a.engine.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	if w.Code != http.StatusOK {
		t.Errorf("/healthz after a panic: %d", w.Code)
	}
}

func TestCursorRoundTrip(t *testing.T) {
	t.Parallel()
	for _, id := range []int64{1, 42, 1 << 62} {
		got, err := decodeCursor(encodeCursor(id))
		if err != nil || got != id {
			t.Errorf("decodeCursor(encodeCursor(%d)) = %d, %v", id, got, err)
		}
	}
}
