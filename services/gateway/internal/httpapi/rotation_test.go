package httpapi_test

import (
	"context"
	"crypto"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/finsvc/finance/pkg/auth"
	"github.com/finsvc/finance/pkg/testkit"
	"github.com/finsvc/finance/services/gateway/internal/tokencache"
)

// TestKeyRotationThroughTheGateway: the identity provider rotates its
// signing key (RS256 to ES256) while clients read their balance over HTTP
// through the gateway, with the production verifier and the verified-token
// cache in front of it, as `gateway` runs them. Every request signed with a
// key the provider publishes is answered 200: none is refused while the new
// key is added, taken into use, or the old one removed. Once the old key is
// gone, a new token of it is refused.
func TestKeyRotationThroughTheGateway(t *testing.T) {
	t.Parallel()
	oldKey, err := auth.GenerateKey(auth.AlgRS256)
	if err != nil {
		t.Fatal(err)
	}
	newKey, err := auth.GenerateKey(auth.AlgES256)
	if err != nil {
		t.Fatal(err)
	}
	kid := func(k crypto.Signer) string {
		id, err := auth.KeyID(k.Public())
		if err != nil {
			t.Fatal(err)
		}
		return id
	}

	// The identity provider's JWKS, replaced whole on each publish.
	var published atomic.Pointer[[]byte]
	publish := func(keys ...crypto.Signer) {
		raw, err := auth.PublicJWKS(nil, keys...)
		if err != nil {
			t.Fatal(err)
		}
		published.Store(&raw)
	}
	publish(oldKey)
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(*published.Load())
	}))
	t.Cleanup(idp.Close)
	v, err := auth.New(context.Background(), auth.Config{
		JWKSURL: idp.URL, Issuer: prodIssuer, Audience: prodAudience, ClockSkew: 30 * time.Second,
		// Removals are learnt by the periodic refresh; an added key also at
		// once, from the first token with its kid.
		RefreshInterval: 50 * time.Millisecond, MinRefreshInterval: time.Hour,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)

	e := newEnvVerifiedBy(t, v, tokencache.New(v, tokencache.Config{MaxEntries: 1000, TTL: time.Minute}))
	srv := httptest.NewServer(e.h)
	t.Cleanup(srv.Close)

	// mint signs a token for user 5 with k. Each has its own expiry, so
	// no two tokens are the same string and the token cache never answers
	// for a token it has not verified.
	var serial atomic.Int64
	mint := func(k crypto.Signer) string {
		now := time.Now()
		tok, err := auth.Sign(k, kid(k), auth.Claims{UserID: 5, Issuer: prodIssuer, Audience: prodAudience,
			IssuedAt: now, ExpiresAt: now.Add(time.Hour + time.Duration(serial.Add(1))*time.Second)})
		if err != nil {
			t.Error(err)
		}
		return tok
	}
	read := func(tok string) (int, error) {
		r, err := http.NewRequest(http.MethodGet, srv.URL+"/v1/users/5/balance", nil)
		if err != nil {
			return 0, err
		}
		r.Header.Set("Authorization", "Bearer "+tok)
		resp, err := srv.Client().Do(r)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, nil
	}

	// signing is the key the identity provider signs with now.
	var signing atomic.Pointer[crypto.Signer]
	signing.Store(&oldKey)
	var (
		stop     atomic.Bool
		wg       sync.WaitGroup
		mu       sync.Mutex
		answered = map[string]int{} // 200s by the kid of their token
		refused  []string
	)
	for range 4 {
		wg.Go(func() {
			for !stop.Load() {
				k := *signing.Load()
				status, err := read(mint(k))
				mu.Lock()
				switch {
				case err != nil:
					refused = append(refused, err.Error())
				case status != http.StatusOK:
					refused = append(refused, fmt.Sprintf("%d for a token of %s", status, kid(k)))
				default:
					answered[kid(k)]++
				}
				mu.Unlock()
			}
		})
	}
	count := func(k crypto.Signer) int {
		mu.Lock()
		defer mu.Unlock()
		return answered[kid(k)]
	}
	testkit.Eventually(t, "reads with the old key", func() bool { return count(oldKey) >= 50 })
	publish(oldKey, newKey)
	signing.Store(&newKey) // at once: the first token with its kid fetches the set
	testkit.Eventually(t, "reads with the new key", func() bool { return count(newKey) >= 50 })
	publish(newKey)
	testkit.Eventually(t, "the old key's tokens refused", func() bool {
		status, err := read(mint(oldKey))
		return err == nil && status == http.StatusUnauthorized
	})
	before := count(newKey)
	testkit.Eventually(t, "more reads after the removal", func() bool { return count(newKey) >= before+50 })
	stop.Store(true)
	wg.Wait()
	if len(refused) > 0 {
		t.Fatalf("%d valid requests refused during the rotation, first: %s", len(refused), refused[0])
	}
	t.Logf("answered 200: %d with the old key, %d with the new", count(oldKey), count(newKey))
}
