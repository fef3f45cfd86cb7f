package auth

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/finsvc/finance/pkg/envconfig"
	"github.com/finsvc/finance/pkg/testkit"
)

const (
	testIssuer   = "https://idp.test/"
	testAudience = "finance-api"
)

// jwksServer serves a key set that the test changes while it runs.
type jwksServer struct {
	url     string
	body    atomic.Pointer[[]byte]
	fetches atomic.Int64
}

func newJWKSServer(t *testing.T, keys ...crypto.Signer) *jwksServer {
	t.Helper()
	s := &jwksServer{}
	s.publish(t, keys...)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		s.fetches.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(*s.body.Load())
	}))
	t.Cleanup(srv.Close)
	s.url = srv.URL + "/.well-known/jwks.json"
	return s
}

func (s *jwksServer) publish(t *testing.T, keys ...crypto.Signer) {
	t.Helper()
	raw, err := PublicJWKS(nil, keys...)
	if err != nil {
		t.Fatal(err)
	}
	s.body.Store(&raw)
}

func genKey(t *testing.T, alg string) crypto.Signer {
	t.Helper()
	k, err := GenerateKey(alg)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func kidOf(t *testing.T, k crypto.Signer) string {
	t.Helper()
	kid, err := KeyID(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	return kid
}

// bundle is what a verifier test needs.
type bundle struct {
	v    *Verifier
	jwks *jwksServer
	rsa  crypto.Signer
	ec   crypto.Signer
	now  time.Time
}

// setup returns a production verifier (no dev mode) over a JWKS server that
// publishes an RSA and an EC key, with its clock frozen at b.now.
func setup(t *testing.T, mod func(*Config)) bundle {
	t.Helper()
	b := bundle{rsa: genKey(t, AlgRS256), ec: genKey(t, AlgES256), now: time.Unix(1_800_000_000, 0)}
	b.jwks = newJWKSServer(t, b.rsa, b.ec)
	cfg := Config{
		JWKSURL: b.jwks.url, Issuer: testIssuer, Audience: testAudience,
		ClockSkew: 30 * time.Second, RefreshInterval: time.Hour, MinRefreshInterval: time.Hour,
		Now: func() time.Time { return b.now },
	}
	if mod != nil {
		mod(&cfg)
	}
	v, err := New(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	b.v = v
	return b
}

func (b bundle) claims(user int64) Claims {
	return Claims{UserID: user, Issuer: testIssuer, Audience: testAudience,
		IssuedAt: b.now, ExpiresAt: b.now.Add(time.Hour)}
}

func sign(t *testing.T, key any, kid string, c Claims) string {
	t.Helper()
	tok, err := Sign(key, kid, c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestVerifyAccepts(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	admin := b.claims(1)
	admin.Admin = true
	withinSkew := b.claims(7)
	withinSkew.ExpiresAt = b.now.Add(-20 * time.Second)
	withinSkew.NotBefore = b.now.Add(20 * time.Second)
	tests := []struct {
		name  string
		token string
		want  Principal
	}{
		{"RS256", sign(t, b.rsa, kidOf(t, b.rsa), b.claims(3456)), Principal{UserID: 3456}},
		{"ES256", sign(t, b.ec, kidOf(t, b.ec), b.claims(42)), Principal{UserID: 42}},
		{"ES256 admin", sign(t, b.ec, kidOf(t, b.ec), admin), Principal{UserID: 1, Admin: true}},
		{"no kid: every key of the set is tried", sign(t, b.rsa, "", b.claims(5)), Principal{UserID: 5}},
		{"exp and nbf within the clock skew", sign(t, b.rsa, kidOf(t, b.rsa), withinSkew), Principal{UserID: 7}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := b.v.FromHeader("Bearer " + tt.token)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("principal (-want +got):\n%s", diff)
			}
		})
	}
}

// unsignedToken builds header.payload.signature by hand, for algorithms the
// jwt package refuses to produce.
func unsignedToken(header, payload, sig string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(header)) + "." + enc([]byte(payload)) + "." + sig
}

func TestVerifyRefuses(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	rsaKid := kidOf(t, b.rsa)
	at := func(mod func(*Claims)) Claims {
		c := b.claims(3456)
		mod(&c)
		return c
	}
	pubDER, err := x509.MarshalPKIXPublicKey(b.rsa.Public())
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	other := genKey(t, AlgRS256)
	tests := []struct {
		name  string
		token string
		want  string // in the error's message
	}{
		{"expired beyond the skew", sign(t, b.rsa, rsaKid, at(func(c *Claims) { c.ExpiresAt = b.now.Add(-31 * time.Second) })),
			"token is expired"},
		{"not valid yet beyond the skew", sign(t, b.rsa, rsaKid, at(func(c *Claims) { c.NotBefore = b.now.Add(31 * time.Second) })),
			"not valid yet"},
		{"no exp", sign(t, b.rsa, rsaKid, at(func(c *Claims) { c.ExpiresAt = time.Time{} })), "exp claim is required"},
		{"wrong issuer", sign(t, b.rsa, rsaKid, at(func(c *Claims) { c.Issuer = "https://evil.test/" })), "issuer (iss)"},
		{"no issuer", sign(t, b.rsa, rsaKid, at(func(c *Claims) { c.Issuer = "" })), "iss"},
		{"wrong audience", sign(t, b.rsa, rsaKid, at(func(c *Claims) { c.Audience = "another-api" })), "audience (aud)"},
		{"no audience", sign(t, b.rsa, rsaKid, at(func(c *Claims) { c.Audience = "" })), "aud"},
		{"alg none", unsignedToken(`{"alg":"none","typ":"JWT"}`,
			`{"sub":"3456","iss":"`+testIssuer+`","aud":"`+testAudience+`","exp":1900000000}`, ""),
			"signing method none is invalid"},
		{"alg confusion: the RSA public key as an HS256 secret", sign(t, pubPEM, rsaKid, b.claims(3456)),
			"HS256 tokens are accepted in dev mode only"},
		{"alg confusion: the DER public key as an HS256 secret", sign(t, pubDER, rsaKid, b.claims(3456)),
			"HS256 tokens are accepted in dev mode only"},
		{"HS256 outside dev mode", sign(t, []byte(DevSecret), "", b.claims(3456)),
			"HS256 tokens are accepted in dev mode only"},
		{"unknown kid", sign(t, other, kidOf(t, other), b.claims(3456)), "not in the identity provider's JWKS"},
		{"a known kid on another key's signature", sign(t, other, rsaKid, b.claims(3456)), "signature is invalid"},
		{"ES256 header with the RSA key's kid", sign(t, b.ec, rsaKid, b.claims(3456)), "does not match"},
		{"alg RS384", unsignedToken(`{"alg":"RS384","kid":"`+rsaKid+`"}`, `{"sub":"1","exp":1900000000}`, "AAAA"),
			"signing method RS384 is invalid"},
		{"sub is not a user id", sign(t, b.rsa, rsaKid, at(func(c *Claims) { c.UserID = 0 })), "is not a user id"},
		{"garbage", "abc.def.ghi", "malformed"},
		{"too long", strings.Repeat("a", MaxTokenLen+1), "longer than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := b.v.Verify(tt.token)
			if !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("Verify = %+v, %v; want ErrInvalidToken", p, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
		})
	}
}

// In dev mode HS256 tokens signed with the dev secret pass, and the alg
// confusion still fails: an HS256 token is checked against the dev secret
// only, never against a JWKS key.
func TestDevModeHS256(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) { c.DevMode, c.HS256Secret = true, DevSecret })
	p, err := b.v.Verify(sign(t, []byte(DevSecret), "", b.claims(9)))
	if err != nil || p.UserID != 9 {
		t.Fatalf("dev token: %+v, %v", p, err)
	}
	if _, err := b.v.Verify(sign(t, b.ec, kidOf(t, b.ec), b.claims(9))); err != nil {
		t.Fatalf("dev mode with a JWKS also takes ES256: %v", err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(b.rsa.Public())
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.v.Verify(sign(t, pubDER, kidOf(t, b.rsa), b.claims(9)))
	if !errors.Is(err, ErrInvalidToken) || !strings.Contains(err.Error(), "signature is invalid") {
		t.Errorf("alg confusion in dev mode: %v, want a signature refusal", err)
	}
	if _, err := NewVerifier([]byte(DevSecret)).Verify(sign(t, b.rsa, kidOf(t, b.rsa), b.claims(9))); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("an HS256-only verifier took an RS256 token: %v", err)
	}
}

// TestKeyRotationUnderTraffic rotates the identity provider's keys while
// clients send requests: a new key is published and tokens are signed with
// it at once, the old key stops signing and is removed later. No token
// signed with a published key is ever refused; once the old key is gone from
// the set, its tokens are.
func TestKeyRotationUnderTraffic(t *testing.T) {
	t.Parallel()
	oldKey, newKey := genKey(t, AlgRS256), genKey(t, AlgES256)
	jwks := newJWKSServer(t, oldKey)
	v, err := New(context.Background(), Config{
		JWKSURL: jwks.url, Issuer: testIssuer, Audience: testAudience, ClockSkew: 30 * time.Second,
		// Removals are learnt by the periodic refresh, additions also at
		// once from the first token with the new kid.
		RefreshInterval: 50 * time.Millisecond, MinRefreshInterval: time.Hour,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)

	// signing is the key the identity provider signs with now.
	var signing atomic.Pointer[crypto.Signer]
	signing.Store(&oldKey)
	mint := func(k crypto.Signer) string {
		now := time.Now()
		tok, err := Sign(k, kidOf(t, k), Claims{UserID: 77, Issuer: testIssuer, Audience: testAudience,
			IssuedAt: now, ExpiresAt: now.Add(time.Minute)})
		if err != nil {
			t.Error(err)
		}
		return tok
	}
	var (
		stop atomic.Bool
		// removing is set before the old key leaves the set: a token of
		// the old key verified after that may be refused, whenever it was
		// minted (a client that took the old key just before the switch
		// and was descheduled until the removal).
		removing atomic.Bool
		wg       sync.WaitGroup
		mu       sync.Mutex
		accepted = map[string]int{}
		refused  []error
	)
	for range 4 {
		wg.Go(func() {
			for !stop.Load() {
				k := *signing.Load()
				_, err := v.FromHeader("Bearer " + mint(k))
				mayRefuse := k == oldKey && removing.Load() // read after the verification
				mu.Lock()
				switch {
				case err == nil:
					accepted[kidOf(t, k)]++
				case !mayRefuse:
					refused = append(refused, fmt.Errorf("kid %s (old key %t): %w", kidOf(t, k), k == oldKey, err))
				}
				mu.Unlock()
			}
		})
	}
	count := func(k crypto.Signer) int {
		mu.Lock()
		defer mu.Unlock()
		return accepted[kidOf(t, k)]
	}
	testkit.Eventually(t, "requests with the old key", func() bool { return count(oldKey) >= 50 })
	jwks.publish(t, oldKey, newKey)
	signing.Store(&newKey) // at once: the first request fetches the set
	testkit.Eventually(t, "requests with the new key", func() bool { return count(newKey) >= 50 })
	removing.Store(true)
	jwks.publish(t, newKey)
	testkit.Eventually(t, "the old key is removed", func() bool {
		_, err := v.Verify(mint(oldKey))
		return err != nil
	})
	before := count(newKey)
	testkit.Eventually(t, "more requests after the removal", func() bool { return count(newKey) >= before+50 })
	stop.Store(true)
	wg.Wait()
	if len(refused) > 0 {
		t.Fatalf("%d valid requests refused during the rotation, first: %v", len(refused), refused[0])
	}
	if _, err := v.Verify(mint(oldKey)); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("a token of the removed key: %v, want refused", err)
	}
}

// A token with an unknown kid fetches the set at once, but at most once per
// MinRefreshInterval, twice at most: forged kids cannot make the gateway hammer the
// identity provider.
func TestUnknownKidRefetchIsRateLimited(t *testing.T) {
	t.Parallel()
	b := setup(t, nil) // RefreshInterval and MinRefreshInterval: 1 h
	if got := b.jwks.fetches.Load(); got != 1 {
		t.Fatalf("fetches at start = %d, want 1", got)
	}
	added := genKey(t, AlgES256)
	b.jwks.publish(t, b.rsa, b.ec, added)
	if _, err := b.v.Verify(sign(t, added, kidOf(t, added), b.claims(1))); err != nil {
		t.Fatalf("a token of a newly published key: %v", err)
	}
	forged := genKey(t, AlgES256)
	for range 5 {
		if _, err := b.v.Verify(sign(t, forged, kidOf(t, forged)+"x", b.claims(1))); !errors.Is(err, ErrInvalidToken) {
			t.Fatalf("forged kid: %v", err)
		}
	}
	if got := b.jwks.fetches.Load(); got != 3 {
		t.Errorf("fetches = %d, want 3 (start, one for the new kid, one for the first forged kid)", got)
	}
}

func TestFileJWKS(t *testing.T) {
	t.Parallel()
	k := genKey(t, AlgES256)
	raw, err := PublicJWKS(nil, k)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	v, err := New(context.Background(), Config{JWKSURL: "file://" + path, Issuer: testIssuer, Audience: testAudience}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	now := time.Now()
	p, err := v.Verify(sign(t, k, kidOf(t, k), Claims{UserID: 3, Issuer: testIssuer, Audience: testAudience, ExpiresAt: now.Add(time.Hour)}))
	if err != nil || p.UserID != 3 {
		t.Fatalf("file:// JWKS: %+v, %v", p, err)
	}
}

func TestLoadConfig(t *testing.T) {
	t.Parallel()
	prod := map[string]string{"AUTH_JWKS_URL": "https://idp.test/jwks.json", "AUTH_ISSUER": testIssuer, "AUTH_AUDIENCE": testAudience}
	with := func(base map[string]string, kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	tests := []struct {
		name    string
		env     map[string]string
		dev     bool
		wantErr []string
		want    func(Config) bool
	}{
		{name: "production", env: prod, want: func(c Config) bool {
			return c.JWKSURL == prod["AUTH_JWKS_URL"] && c.ClockSkew == 30*time.Second && !c.DevMode && c.HS256Secret == ""
		}},
		{name: "production without anything", env: map[string]string{},
			wantErr: []string{"AUTH_JWKS_URL is not set", "AUTH_ISSUER is not set", "AUTH_AUDIENCE is not set"}},
		{name: "HS256 secret outside dev mode", env: with(prod, "AUTH_JWT_SECRET", DevSecret),
			wantErr: []string{"AUTH_JWT_SECRET is set but FINANCE_DEV_MODE is not"}},
		{name: "skew too large", env: with(prod, "AUTH_CLOCK_SKEW", "10m"), wantErr: []string{"AUTH_CLOCK_SKEW=10m0s"}},
		{name: "negative skew", env: with(prod, "AUTH_CLOCK_SKEW", "-1s"), wantErr: []string{"AUTH_CLOCK_SKEW=-1s"}},
		{name: "ftp JWKS", env: with(prod, "AUTH_JWKS_URL", "ftp://x/jwks"), wantErr: []string{`scheme "ftp"`}},
		{name: "file JWKS", env: with(prod, "AUTH_JWKS_URL", "file:///etc/finance/jwks.json"),
			want: func(c Config) bool { return c.JWKSURL == "file:///etc/finance/jwks.json" }},
		{name: "dev mode: the dev secret", env: map[string]string{}, dev: true,
			want: func(c Config) bool { return c.HS256Secret == DevSecret && c.UsingDevSecret }},
		{name: "dev mode: a short secret", env: map[string]string{"AUTH_JWT_SECRET": "short"}, dev: true,
			wantErr: []string{"AUTH_JWT_SECRET is 5 bytes"}},
		{name: "dev mode with a JWKS too", env: prod, dev: true,
			want: func(c Config) bool { return c.JWKSURL != "" && c.UsingDevSecret }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := envconfig.New(func(k string) string { return tt.env[k] })
			c := LoadConfig(r, tt.dev)
			err := r.Err()
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if !tt.want(c) {
					t.Errorf("config %+v", c)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error; want %q", tt.wantErr)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

func TestKeysRoundTrip(t *testing.T) {
	t.Parallel()
	for _, alg := range []string{AlgRS256, AlgES256} {
		k := genKey(t, alg)
		pemBytes, err := MarshalPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParsePrivateKey(pemBytes)
		if err != nil {
			t.Fatal(err)
		}
		if kidOf(t, back) != kidOf(t, k) {
			t.Errorf("%s: key id changed through PEM", alg)
		}
		// Two keys in one set, then the first again: no duplicate.
		k2 := genKey(t, alg)
		set, err := PublicJWKS(nil, k)
		if err != nil {
			t.Fatal(err)
		}
		set, err = PublicJWKS(set, k2, k)
		if err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(string(set), `"kid"`); n != 2 {
			t.Errorf("%s: %d keys in %s, want 2", alg, n, set)
		}
		if strings.Contains(string(set), `"d"`) {
			t.Errorf("%s: private part in the public set: %s", alg, set)
		}
	}
	// RFC 7638 §3.1's example key and thumbprint.
	const n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
	nBytes, err := base64.RawURLEncoding.DecodeString(n)
	if err != nil {
		t.Fatal(err)
	}
	kid, err := KeyID(&rsa.PublicKey{N: new(big.Int).SetBytes(nBytes), E: 65537})
	if err != nil {
		t.Fatal(err)
	}
	if kid != "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs" {
		t.Errorf("RFC 7638 thumbprint = %s", kid)
	}
}

// VerifyToken says how long a token stays valid and which key signed it;
// KeyPublished whether that key still verifies: what a cache of verified
// tokens needs to keep one no longer than the token and its key.
func TestVerifyTokenAndKeyPublished(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	kid := kidOf(t, b.ec)
	c := b.claims(4)
	got, err := b.v.VerifyToken(sign(t, b.ec, kid, c))
	if err != nil {
		t.Fatal(err)
	}
	want := Verified{Principal: Principal{UserID: 4}, ExpiresAt: c.ExpiresAt, Alg: AlgES256, KeyID: kid}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("VerifyToken (-want +got):\n%s", diff)
	}
	for _, k := range []struct {
		alg, kid string
		want     bool
	}{
		{AlgES256, kid, true},
		{AlgRS256, kidOf(t, b.rsa), true},
		{AlgES256, "unknown", false},
		{AlgHS256, "", false}, // not dev mode
		{"none", "", false},
	} {
		if got := b.v.KeyPublished(k.alg, k.kid); got != k.want {
			t.Errorf("KeyPublished(%s, %q) = %v, want %v", k.alg, k.kid, got, k.want)
		}
	}

	dev := NewVerifier([]byte(DevSecret))
	now := time.Now().Truncate(time.Second)
	tok, err := Sign([]byte(DevSecret), "some-kid", Claims{UserID: 5, Admin: true, ExpiresAt: now.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	got, err = dev.VerifyToken(tok)
	if err != nil {
		t.Fatal(err)
	}
	// HS256 has one key, the dev secret: a kid in its header names nothing.
	want = Verified{Principal: Principal{UserID: 5, Admin: true}, ExpiresAt: now.Add(time.Hour), Alg: AlgHS256}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("dev VerifyToken (-want +got):\n%s", diff)
	}
	if !dev.KeyPublished(AlgHS256, "") || dev.KeyPublished(AlgES256, kid) {
		t.Errorf("dev KeyPublished: HS256 %v (want true), ES256 %v (want false)",
			dev.KeyPublished(AlgHS256, ""), dev.KeyPublished(AlgES256, kid))
	}
}
