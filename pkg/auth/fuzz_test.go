package auth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fuzzKeyPEM is a fixed ES256 test key, so that committed corpus entries
// signed with it stay valid. It signs nothing outside this test.
const fuzzKeyPEM = `-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgEaPBGLwJJmA4rhA5
zNi7YKlQjjMkWscJtCN/+jEactehRANCAARSBbJlRXuugwbzqQrkHPIRgM3tPW8q
aizGNFsNbSwgmL59WiGYag4nQDls4cknw0r21Nj7s8xIAuQtIWwAJP0B
-----END PRIVATE KEY-----
`

// FuzzVerify feeds arbitrary Authorization header values to a verifier that
// takes HS256 dev tokens and ES256 tokens of a fixed key (a file:// JWKS),
// at a frozen clock. Property: a refusal wraps ErrInvalidToken; an
// acceptance is a token of an accepted alg for a positive user, and the
// principal round-trips: a token minted for it verifies to it again.
func FuzzVerify(f *testing.F) {
	key, err := ParsePrivateKey([]byte(fuzzKeyPEM))
	if err != nil {
		f.Fatal(err)
	}
	kid, err := KeyID(key.Public())
	if err != nil {
		f.Fatal(err)
	}
	set, err := PublicJWKS(nil, key)
	if err != nil {
		f.Fatal(err)
	}
	path := filepath.Join(f.TempDir(), "jwks.json")
	if err := os.WriteFile(path, set, 0o600); err != nil {
		f.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	v, err := New(context.Background(), Config{
		JWKSURL: "file://" + path, Issuer: "iss", Audience: "aud", ClockSkew: time.Minute,
		RefreshInterval: time.Hour, MinRefreshInterval: time.Hour,
		DevMode: true, HS256Secret: DevSecret, Now: func() time.Time { return now },
	}, nil)
	if err != nil {
		f.Fatal(err)
	}
	defer v.Close()
	good := Claims{UserID: 3456, Issuer: "iss", Audience: "aud", IssuedAt: now, ExpiresAt: now.Add(time.Hour)}
	for _, seed := range []struct {
		key any
		kid string
		c   Claims
	}{
		{key, kid, good},
		{[]byte(DevSecret), "", good},
		{key, "", Claims{UserID: 1, Admin: true, Issuer: "iss", Audience: "aud", ExpiresAt: now.Add(time.Minute), NotBefore: now}},
		{key, kid, Claims{UserID: 1, Issuer: "iss", Audience: "aud", ExpiresAt: now.Add(-time.Hour)}},
		{[]byte(DevSecret), kid, Claims{UserID: 1, Issuer: "other", Audience: "aud", ExpiresAt: now.Add(time.Hour)}},
	} {
		tok, err := Sign(seed.key, seed.kid, seed.c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add("Bearer " + tok)
	}
	enc := base64.RawURLEncoding.EncodeToString
	f.Add("Bearer " + enc([]byte(`{"alg":"none"}`)) + "." + enc([]byte(`{"sub":"1","iss":"iss","aud":"aud","exp":1900000000}`)) + ".")
	f.Add("bearer  a.b.c ")
	f.Add("Basic dXNlcjpwYXNz")
	f.Add("")
	f.Fuzz(func(t *testing.T, header string) {
		p, err := v.FromHeader(header)
		if err != nil {
			if !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("FromHeader(%q) = %v, want ErrInvalidToken", header, err)
			}
			return
		}
		if p.UserID <= 0 {
			t.Fatalf("accepted %q for user %d", header, p.UserID)
		}
		tok, _ := BearerToken(header)
		rawHeader, err := base64.RawURLEncoding.DecodeString(strings.SplitN(tok, ".", 2)[0])
		var h struct {
			Alg string `json:"alg"`
		}
		if err != nil || json.Unmarshal(rawHeader, &h) != nil || (h.Alg != AlgHS256 && h.Alg != AlgES256) {
			t.Fatalf("accepted a token whose header %q names no accepted alg", rawHeader)
		}
		again, err := Sign(key, kid, Claims{UserID: p.UserID, Admin: p.Admin, Issuer: "iss", Audience: "aud", ExpiresAt: now.Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		if p2, err := v.Verify(again); err != nil || p2 != p {
			t.Fatalf("principal %+v minted again verifies as %+v, %v", p, p2, err)
		}
	})
}
