package webhook

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The Standard Webhooks headers.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// SecretPrefix starts every signing secret's text: "whsec_<base64 key>".
const SecretPrefix = "whsec_"

// secretBytes is the length of a generated key: 24 bytes (192 bits), as
// the reference implementations generate.
const secretBytes = 24

// Secret is an endpoint's signing secret. It prints and logs as
// "whsec_REDACTED": only Reveal shows it, for the one answer that hands it
// to its owner and for storage.
type Secret struct {
	text string
	key  []byte
}

// NewSecret generates a random secret.
func NewSecret() Secret {
	key := make([]byte, secretBytes)
	_, _ = rand.Read(key) // crypto/rand.Read never fails (Go 1.24+)
	return Secret{text: SecretPrefix + base64.StdEncoding.EncodeToString(key), key: key}
}

// ParseSecret parses "whsec_<base64>" (the prefix is optional, as the
// reference libraries accept it).
func ParseSecret(s string) (Secret, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(s, SecretPrefix))
	if err != nil || len(key) == 0 {
		return Secret{}, errors.New("webhook secret: want whsec_ and a base64 key")
	}
	return Secret{text: SecretPrefix + strings.TrimPrefix(s, SecretPrefix), key: key}, nil
}

// Reveal returns the secret's text.
func (s Secret) Reveal() string { return s.text }

// String keeps the secret out of printed values.
func (s Secret) String() string { return SecretPrefix + "REDACTED" }

// LogValue keeps the secret out of the logs.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// IsZero tells an unset secret.
func (s Secret) IsZero() bool { return len(s.key) == 0 }

// signature returns "v1,<base64 HMAC-SHA256 of id.timestamp.body>".
func (s Secret) signature(id string, ts int64, body []byte) string {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write(strconv.AppendInt(nil, ts, 10))
	m.Write([]byte{'.'})
	m.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// Sign returns the webhook-signature header's value: one "v1,<sig>" per
// secret, space-separated (during a rotation, the new and the previous).
func Sign(id string, at time.Time, body []byte, secrets ...Secret) string {
	sigs := make([]string, 0, len(secrets))
	for _, s := range secrets {
		if !s.IsZero() {
			sigs = append(sigs, s.signature(id, at.Unix(), body))
		}
	}
	return strings.Join(sigs, " ")
}

// SetHeaders sets the three signature headers of a request that sends body
// as message id at time at.
func SetHeaders(h http.Header, id string, at time.Time, body []byte, secrets ...Secret) {
	h.Set(HeaderID, id)
	h.Set(HeaderTimestamp, strconv.FormatInt(at.Unix(), 10))
	h.Set(HeaderSignature, Sign(id, at, body, secrets...))
}

// DefaultTolerance is how far a webhook's timestamp may be from the
// receiver's clock, as the reference implementations allow.
const DefaultTolerance = 5 * time.Minute

// Errors of Verify.
var (
	ErrMissingHeader = errors.New("webhook: missing webhook-id, webhook-timestamp or webhook-signature")
	ErrTimestamp     = errors.New("webhook: timestamp outside the tolerance")
	ErrSignature     = errors.New("webhook: no matching signature")
)

// Verifier checks the signatures of webhooks a receiver gets. Give it the
// endpoint's secret (and during a rotation the other one too).
type Verifier struct {
	secrets []Secret
	// Tolerance is the accepted distance between the webhook's timestamp
	// and now (DefaultTolerance when 0): older messages are replays.
	Tolerance time.Duration
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// NewVerifier returns a verifier for the given secrets ("whsec_...").
func NewVerifier(secrets ...string) (*Verifier, error) {
	if len(secrets) == 0 {
		return nil, errors.New("webhook verifier: no secret")
	}
	v := &Verifier{}
	for _, s := range secrets {
		sec, err := ParseSecret(s)
		if err != nil {
			return nil, err
		}
		v.secrets = append(v.secrets, sec)
	}
	return v, nil
}

// Verify checks the headers of a webhook whose body is body: the timestamp
// within the tolerance, and one of the signatures (compared in constant
// time) made by one of the secrets.
func (v *Verifier) Verify(h http.Header, body []byte) error {
	id, tsText, sigs := h.Get(HeaderID), h.Get(HeaderTimestamp), h.Get(HeaderSignature)
	if id == "" || tsText == "" || sigs == "" {
		return ErrMissingHeader
	}
	ts, err := strconv.ParseInt(tsText, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: %q is not a unix time", ErrTimestamp, tsText)
	}
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	tol := v.Tolerance
	if tol == 0 {
		tol = DefaultTolerance
	}
	if d := now().Sub(time.Unix(ts, 0)); d > tol || d < -tol {
		return ErrTimestamp
	}
	for _, s := range v.secrets {
		want := []byte(s.signature(id, ts, body))
		for _, got := range strings.Fields(sigs) {
			if hmac.Equal([]byte(got), want) {
				return nil
			}
		}
	}
	return ErrSignature
}
