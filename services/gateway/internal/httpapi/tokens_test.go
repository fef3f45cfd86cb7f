package httpapi_test

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/finsvc/finance/pkg/auth"
	"github.com/finsvc/finance/pkg/obs"
	"github.com/finsvc/finance/pkg/pgtest"
	"github.com/finsvc/finance/pkg/postgres"
	"github.com/finsvc/finance/services/gateway/internal/httpapi"
	"github.com/finsvc/finance/services/gateway/internal/store"
	"github.com/finsvc/finance/services/gateway/internal/tokencache"
)

const (
	prodIssuer   = "https://idp.test/"
	prodAudience = "finance-api"
)

// newProdEnv is newEnv with a production verifier: RS256 and ES256 tokens
// from the keys it returns, published by a JWKS server; HS256 refused.
func newProdEnv(t *testing.T) (*env, crypto.Signer, crypto.Signer) {
	t.Helper()
	rsaKey, err := auth.GenerateKey(auth.AlgRS256)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := auth.GenerateKey(auth.AlgES256)
	if err != nil {
		t.Fatal(err)
	}
	jwks, err := auth.PublicJWKS(nil, rsaKey, ecKey)
	if err != nil {
		t.Fatal(err)
	}
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(jwks) }))
	t.Cleanup(idp.Close)
	v, err := auth.New(context.Background(), auth.Config{
		JWKSURL: idp.URL, Issuer: prodIssuer, Audience: prodAudience, ClockSkew: 30 * time.Second,
		RefreshInterval: time.Hour, MinRefreshInterval: time.Hour,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	return newEnvVerifiedBy(t, v, nil), rsaKey, ecKey
}

// newEnvVerifiedBy is newEnv with tokens checked by v, through tokens (the
// verified-token cache) when that is not nil; user 5 has a wallet of 10,000.
func newEnvVerifiedBy(t *testing.T, v *auth.Verifier, tokens *tokencache.Cache) *env {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	pool, err := postgres.Connect(context.Background(), pgtest.NewDB(t), 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	st := store.New(pool)
	batchCtx, stop := context.WithCancel(context.Background())
	wait := st.StartBatching(batchCtx, store.BatchConfig{Workers: 1, MaxBatch: 8, Logger: logger})
	t.Cleanup(func() { stop(); wait() })
	e := &env{t: t, pool: pool, h: checked(t, httpapi.New(httpapi.Config{
		Logger: logger, Store: st, Verifier: v, Tokens: tokens, Registry: obs.NewRegistry()}))}
	e.exec(`INSERT INTO merchants (id, name) VALUES (4593, 'Amazon')`)
	e.wallet(5, 10_000)
	return e
}

// TestProductionTokens: through HTTP, RS256 and ES256 tokens of the
// identity provider pay, and every refused token is a 401 problem+json
// with a detail that says why and a WWW-Authenticate challenge, and writes
// nothing.
func TestProductionTokens(t *testing.T) {
	t.Parallel()
	e, rsaKey, ecKey := newProdEnv(t)
	now := time.Now()
	good := auth.Claims{UserID: 5, Issuer: prodIssuer, Audience: prodAudience, IssuedAt: now, ExpiresAt: now.Add(time.Hour)}
	signed := func(key any, mod func(*auth.Claims)) string {
		c := good
		if mod != nil {
			mod(&c)
		}
		kid := ""
		if s, ok := key.(crypto.Signer); ok {
			if kid, _ = auth.KeyID(s.Public()); kid == "" {
				t.Fatal("no key id")
			}
		}
		if b, ok := key.([]byte); ok && len(b) > 0 && b[0] == 0x30 { // a DER public key: the RSA key's kid
			kid, _ = auth.KeyID(rsaKey.Public())
		}
		tok, err := auth.Sign(key, kid, c)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	pubDER, err := x509.MarshalPKIXPublicKey(rsaKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := auth.GenerateKey(auth.AlgES256)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding.EncodeToString
	algNone := enc([]byte(`{"alg":"none"}`)) + "." + enc([]byte(`{"sub":"5","iss":"`+prodIssuer+`","aud":"`+prodAudience+`","exp":4102444800}`)) + "."

	refused := []struct {
		name, token, detail string
	}{
		{"expired", signed(ecKey, func(c *auth.Claims) { c.ExpiresAt = now.Add(-time.Minute) }), "token is expired"},
		{"not yet valid", signed(ecKey, func(c *auth.Claims) { c.NotBefore = now.Add(time.Minute) }), "not valid yet"},
		{"wrong issuer", signed(rsaKey, func(c *auth.Claims) { c.Issuer = "https://evil.test/" }), "issuer (iss)"},
		{"wrong audience", signed(rsaKey, func(c *auth.Claims) { c.Audience = "another-api" }), "audience (aud)"},
		{"alg none", algNone, "signing method none is invalid"},
		{"alg confusion", signed(pubDER, nil), "HS256 tokens are accepted in dev mode only"},
		{"unknown kid", signed(stranger, nil), "is not in the identity provider's JWKS"},
		{"HS256 outside dev mode", signed([]byte(auth.DevSecret), nil), "HS256 tokens are accepted in dev mode only"},
	}
	for i, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			w := e.do(req{method: "POST", path: "/v1/payments", token: tc.token,
				body:   `{"user_id":5,"merchant_id":4593,"amount":-100}`,
				header: map[string]string{"Idempotency-Key": "tok-refused-" + string(rune('a'+i))}})
			p := wantProblem(t, w, http.StatusUnauthorized, "unauthorized")
			if !strings.Contains(p.Detail, tc.detail) {
				t.Errorf("detail %q does not say %q", p.Detail, tc.detail)
			}
			if got := w.Header().Get("WWW-Authenticate"); got != `Bearer realm="finance", error="invalid_token"` {
				t.Errorf("WWW-Authenticate = %q", got)
			}
			if n := e.count(`SELECT count(*) FROM payments`); n != 0 {
				t.Errorf("payments = %d after a refused token, want 0", n)
			}
		})
	}
	for i, key := range []crypto.Signer{rsaKey, ecKey} {
		w := e.do(req{method: "POST", path: "/v1/payments", token: signed(key, nil),
			body:   `{"user_id":5,"merchant_id":4593,"amount":-100}`,
			header: map[string]string{"Idempotency-Key": "tok-good-" + string(rune('a'+i))}})
		if w.Code != http.StatusAccepted {
			t.Errorf("%T token: status %d, body %s", key, w.Code, w.Body.String())
		}
	}
	if n := e.count(`SELECT count(*) FROM payments`); n != 2 {
		t.Errorf("payments = %d, want the 2 with valid tokens", n)
	}
}
