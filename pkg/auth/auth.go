// Package auth mints and verifies the bearer tokens of the Finance Service.
// Claim sub is the user id; scope "admin" may act for any user.
//
// In production tokens are RS256 or ES256, issued by an identity provider
// and verified against its JWKS (a JSON Web Key Set fetched from a URL,
// cached, refreshed on an interval and when a token names an unknown key
// id, so that keys rotate without a restart); iss, aud, exp and nbf are
// checked with a bounded clock skew. HS256 with one shared secret is for dev
// mode only (FINANCE_DEV_MODE): outside it an HS256 token is refused.
package auth

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// DevSecret is the documented secret of the all-in-one dev mode. Never use it
// outside a developer's machine: anyone can mint tokens with it.
const DevSecret = "finance-dev-secret-do-not-use-in-production"

// ScopeAdmin lets a token act for any user and use the admin routes.
const ScopeAdmin = "admin"

// MinSecretLen is the shortest HS256 secret accepted.
const MinSecretLen = 32

// MaxTokenLen is the longest token Verify parses; a longer one is refused
// before any decoding (a real token is well under 2 KiB).
const MaxTokenLen = 8 << 10

// ErrInvalidToken means the token is missing, malformed, expired, not yet
// valid, for another issuer or audience, or badly signed.
var ErrInvalidToken = errors.New("invalid token")

// Principal is who a verified token speaks for.
type Principal struct {
	UserID int64
	Admin  bool
}

// CanActFor reports whether p may read or pay as userID.
func (p Principal) CanActFor(userID int64) bool {
	return p.Admin || p.UserID == userID
}

type claims struct {
	Scope string `json:"scope,omitempty"`
	jwt.RegisteredClaims
}

// Mint returns an HS256 token for userID signed with secret, valid for ttl:
// the dev-mode token.
func Mint(secret []byte, userID int64, admin bool, ttl time.Duration, now time.Time) (string, error) {
	return Sign(secret, "", Claims{UserID: userID, Admin: admin, IssuedAt: now, ExpiresAt: now.Add(ttl)})
}

// Claims is what Sign puts in a token. Zero times and empty strings are left
// out.
type Claims struct {
	UserID    int64
	Admin     bool
	Issuer    string
	Audience  string
	IssuedAt  time.Time
	NotBefore time.Time
	ExpiresAt time.Time
}

func (c Claims) jwt() claims {
	out := claims{RegisteredClaims: jwt.RegisteredClaims{
		Subject: strconv.FormatInt(c.UserID, 10),
		Issuer:  c.Issuer,
	}}
	if c.Audience != "" {
		out.Audience = jwt.ClaimStrings{c.Audience}
	}
	for _, t := range []struct {
		at  time.Time
		out **jwt.NumericDate
	}{{c.IssuedAt, &out.IssuedAt}, {c.NotBefore, &out.NotBefore}, {c.ExpiresAt, &out.ExpiresAt}} {
		if !t.at.IsZero() {
			*t.out = jwt.NewNumericDate(t.at)
		}
	}
	if c.Admin {
		out.Scope = ScopeAdmin
	}
	return out
}

// BearerToken returns the token of an "Authorization: Bearer <token>"
// header value; a refusal wraps ErrInvalidToken.
func BearerToken(header string) (string, error) {
	scheme, token, ok := strings.Cut(header, " ")
	token = strings.TrimSpace(token)
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return "", fmt.Errorf("%w: expected header \"Authorization: Bearer <token>\"", ErrInvalidToken)
	}
	return token, nil
}

// principalOf turns verified claims into a Principal.
func principalOf(c claims) (Principal, error) {
	id, err := strconv.ParseInt(c.Subject, 10, 64)
	if err != nil || id <= 0 || strconv.FormatInt(id, 10) != c.Subject {
		return Principal{}, fmt.Errorf("%w: sub %q is not a user id", ErrInvalidToken, c.Subject)
	}
	admin := false
	for _, s := range strings.Fields(c.Scope) {
		if s == ScopeAdmin {
			admin = true
		}
	}
	return Principal{UserID: id, Admin: admin}, nil
}
