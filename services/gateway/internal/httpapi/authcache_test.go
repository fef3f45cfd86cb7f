package httpapi_test

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/finsvc/finance/pkg/auth"
	"github.com/finsvc/finance/pkg/obs"
	"github.com/finsvc/finance/services/gateway/internal/httpapi"
	"github.com/finsvc/finance/services/gateway/internal/store"
	"github.com/finsvc/finance/services/gateway/internal/tokencache"
)

// With the token cache in front of the verifier (as run.go wires it), a
// repeated token is served from the cache and still speaks for its own
// user only; expired, malformed and forged tokens are refused with 401
// problems, every time.
func TestTokenCacheInFront(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.wallet(7, 100)
	e.wallet(8, 200)
	reg := prometheus.NewRegistry()
	h := httpapi.New(httpapi.Config{
		Logger: slog.New(slog.DiscardHandler), Store: store.New(e.pool), Verifier: auth.NewVerifier(testSecret),
		Tokens:   tokencache.New(auth.NewVerifier(testSecret), tokencache.Config{MaxEntries: 10, TTL: time.Minute, Registry: reg}),
		Registry: obs.NewRegistry(),
	})
	get := func(path, tok string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodGet, path, nil)
		r.Header.Set("Authorization", "Bearer "+tok)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	expired, err := auth.Mint(testSecret, 7, false, time.Minute, time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	forged, err := auth.Mint([]byte(strings.Repeat("k", 40)), 7, true, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	seven, eight := token(t, 7, false), token(t, 8, false)
	for i, c := range []struct {
		path, tok string
		want      int
	}{
		{"/v1/users/7/balance", seven, http.StatusOK},        // miss
		{"/v1/users/7/balance", seven, http.StatusOK},        // hit
		{"/v1/users/8/balance", seven, http.StatusForbidden}, // hit: still user 7
		{"/v1/users/8/balance", eight, http.StatusOK},        // miss
		{"/v1/users/7/balance", expired, http.StatusUnauthorized},
		{"/v1/users/7/balance", expired, http.StatusUnauthorized},
		{"/v1/users/8/balance", forged, http.StatusUnauthorized},
		{"/v1/users/8/balance", forged, http.StatusUnauthorized},
		{"/v1/users/7/balance", "not.a.token", http.StatusUnauthorized},
	} {
		w := get(c.path, c.tok)
		if w.Code != c.want {
			t.Fatalf("request %d (%s): %d %s, want %d", i, c.path, w.Code, w.Body.String(), c.want)
		}
		if c.want == http.StatusUnauthorized && (w.Header().Get("Content-Type") != "application/problem+json" || w.Header().Get("WWW-Authenticate") == "") {
			t.Errorf("request %d: refusal without problem+json and WWW-Authenticate: %v", i, w.Header())
		}
	}
	got := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			got[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
		}
	}
	if diff := cmp.Diff(map[string]float64{"hit": 2, "miss": 2, "refused": 5}, got); diff != "" {
		t.Errorf("gateway_token_cache_total (-want +got):\n%s", diff)
	}
}
