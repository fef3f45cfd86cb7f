// Package auth mints and verifies the HS256 bearer tokens of the Finance
// Service. Claim sub is the user id; scope "admin" may act for any user.
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

// ErrInvalidToken means the token is missing, malformed, expired or badly signed.
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

// Mint returns a signed token for userID, valid for ttl.
func Mint(secret []byte, userID int64, admin bool, ttl time.Duration, now time.Time) (string, error) {
	c := claims{RegisteredClaims: jwt.RegisteredClaims{
		Subject:   strconv.FormatInt(userID, 10),
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}}
	if admin {
		c.Scope = ScopeAdmin
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
}

// Verifier checks tokens signed with one secret.
type Verifier struct {
	secret []byte
}

// NewVerifier returns a Verifier for secret.
func NewVerifier(secret []byte) *Verifier {
	return &Verifier{secret: secret}
}

// FromHeader verifies an "Authorization: Bearer <token>" header value.
func (v *Verifier) FromHeader(header string) (Principal, error) {
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return Principal{}, fmt.Errorf("%w: expected header \"Authorization: Bearer <token>\"", ErrInvalidToken)
	}
	return v.Verify(strings.TrimSpace(token))
}

// Verify checks token and returns its principal.
func (v *Verifier) Verify(token string) (Principal, error) {
	var c claims
	_, err := jwt.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return v.secret, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
	)
	if err != nil {
		return Principal{}, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	id, err := strconv.ParseInt(c.Subject, 10, 64)
	if err != nil || id <= 0 {
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
