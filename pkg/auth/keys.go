package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
)

// The algorithms of production tokens.
const (
	AlgRS256 = "RS256"
	AlgES256 = "ES256"
	AlgHS256 = "HS256"
)

// Sign returns a token with claims c signed by key: an HS256 secret
// ([]byte), an RSA key (RS256) or a P-256 ECDSA key (ES256). kid, when not
// empty, is put in the header so that a verifier picks the key from its JWKS.
func Sign(key any, kid string, c Claims) (string, error) {
	var method jwt.SigningMethod
	switch k := key.(type) {
	case []byte:
		method = jwt.SigningMethodHS256
	case *rsa.PrivateKey:
		method = jwt.SigningMethodRS256
	case *ecdsa.PrivateKey:
		if k.Curve != elliptic.P256() {
			return "", fmt.Errorf("sign: ES256 needs a P-256 key, not %s", k.Curve.Params().Name)
		}
		method = jwt.SigningMethodES256
	default:
		return "", fmt.Errorf("sign: unsupported key type %T", key)
	}
	t := jwt.NewWithClaims(method, c.jwt())
	if kid != "" {
		t.Header["kid"] = kid
	}
	return t.SignedString(key)
}

// GenerateKey returns a new private key for alg: RS256 (RSA 2048) or ES256
// (ECDSA P-256).
func GenerateKey(alg string) (crypto.Signer, error) {
	switch alg {
	case AlgRS256:
		return rsa.GenerateKey(rand.Reader, 2048)
	case AlgES256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	return nil, fmt.Errorf("generate key: algorithm %q: want %s or %s", alg, AlgRS256, AlgES256)
}

// AlgOf returns the signing algorithm of key: RS256 or ES256.
func AlgOf(key crypto.Signer) (string, error) {
	switch k := key.(type) {
	case *rsa.PrivateKey:
		return AlgRS256, nil
	case *ecdsa.PrivateKey:
		if k.Curve == elliptic.P256() {
			return AlgES256, nil
		}
	}
	return "", fmt.Errorf("key type %T: want an RSA or a P-256 ECDSA key", key)
}

// KeyID is the RFC 7638 thumbprint of pub (SHA-256, base64url): a key id
// that follows from the key, so that minting needs only the private key.
func KeyID(pub crypto.PublicKey) (string, error) {
	var members any
	switch k := pub.(type) {
	case *rsa.PublicKey:
		members = struct {
			E   string `json:"e"`
			Kty string `json:"kty"`
			N   string `json:"n"`
		}{b64(bigEndian(int64(k.E))), "RSA", b64(k.N.Bytes())}
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return "", fmt.Errorf("key id: curve %s: want P-256", k.Curve.Params().Name)
		}
		raw, err := k.Bytes() // 0x04 || X || Y, fixed length
		if err != nil {
			return "", fmt.Errorf("key id: %w", err)
		}
		members = struct {
			Crv string `json:"crv"`
			Kty string `json:"kty"`
			X   string `json:"x"`
			Y   string `json:"y"`
		}{"P-256", "EC", b64(raw[1:33]), b64(raw[33:])}
	default:
		return "", fmt.Errorf("key id: unsupported public key type %T", pub)
	}
	canonical, err := json.Marshal(members) // fields in lexicographic order, no spaces: RFC 7638 §3
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(canonical)
	return b64(sum[:]), nil
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func bigEndian(v int64) []byte {
	var out []byte
	for ; v > 0; v >>= 8 {
		out = append([]byte{byte(v)}, out...)
	}
	return out
}

// PublicJWKS returns the JSON Web Key Set of the public halves of keys, each
// with its alg, use "sig" and its KeyID, followed by the keys of existing
// (a JWKS document, or nil): adding a key to a set is how keys rotate.
func PublicJWKS(existing []byte, keys ...crypto.Signer) ([]byte, error) {
	ctx := context.Background()
	store := jwkset.NewMemoryStorage()
	for _, k := range keys {
		alg, err := AlgOf(k)
		if err != nil {
			return nil, err
		}
		kid, err := KeyID(k.Public())
		if err != nil {
			return nil, err
		}
		jwk, err := jwkset.NewJWKFromKey(k.Public(), jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{
			ALG: jwkset.ALG(alg), KID: kid, USE: jwkset.UseSig,
		}})
		if err != nil {
			return nil, fmt.Errorf("jwk of %s key: %w", alg, err)
		}
		if err := store.KeyWrite(ctx, jwk); err != nil {
			return nil, err
		}
	}
	if len(existing) > 0 {
		var set jwkset.JWKSMarshal
		if err := json.Unmarshal(existing, &set); err != nil {
			return nil, fmt.Errorf("existing JWKS: %w", err)
		}
		old, err := set.JWKSlice()
		if err != nil {
			return nil, fmt.Errorf("existing JWKS: %w", err)
		}
		for _, jwk := range old {
			if _, err := store.KeyRead(ctx, jwk.Marshal().KID); err == nil {
				continue // the same key again
			}
			if err := store.KeyWrite(ctx, jwk); err != nil {
				return nil, err
			}
		}
	}
	raw, err := store.JSONPublic(ctx)
	if err != nil {
		return nil, fmt.Errorf("marshal JWKS: %w", err)
	}
	return raw, nil
}

// MarshalPrivateKey encodes key as a PKCS #8 PEM block.
func MarshalPrivateKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("marshal private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParsePrivateKey decodes a PEM private key (PKCS #8, or PKCS #1 RSA, or
// SEC 1 EC) that can sign RS256 or ES256 tokens.
func ParsePrivateKey(data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("parse private key: no PEM block")
	}
	var key any
	var err error
	switch block.Type {
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	}
	if err != nil {
		return nil, fmt.Errorf("parse private key: %w", err)
	}
	s, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("parse private key: %T cannot sign", key)
	}
	if _, err := AlgOf(s); err != nil {
		return nil, fmt.Errorf("parse private key: %w", err)
	}
	return s, nil
}
