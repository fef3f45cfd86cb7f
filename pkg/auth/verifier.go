package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/sync/singleflight"
	"golang.org/x/time/rate"

	"github.com/finsvc/finance/pkg/envconfig"
)

// MaxClockSkew bounds AUTH_CLOCK_SKEW: a larger leeway would keep expired
// tokens alive.
const MaxClockSkew = 5 * time.Minute

// Config says which tokens a Verifier accepts. LoadConfig reads it from the
// environment.
type Config struct {
	// JWKSURL (AUTH_JWKS_URL) is where the identity provider publishes its
	// keys: https://, http:// or file://. Required outside dev mode.
	JWKSURL string
	// Issuer (AUTH_ISSUER) and Audience (AUTH_AUDIENCE) must equal the
	// token's iss and be one of its aud. Required outside dev mode; in dev
	// mode checked when set.
	Issuer   string
	Audience string
	// ClockSkew (AUTH_CLOCK_SKEW) is the leeway on exp and nbf, at most
	// MaxClockSkew.
	ClockSkew time.Duration
	// RefreshInterval (AUTH_JWKS_REFRESH_INTERVAL) is how often the JWKS is
	// fetched again; MinRefreshInterval (AUTH_JWKS_MIN_REFRESH_INTERVAL) is
	// how often at most a token with an unknown kid makes it fetched at
	// once (a rotated-in key is then usable before the next refresh).
	RefreshInterval    time.Duration
	MinRefreshInterval time.Duration
	// DevMode (FINANCE_DEV_MODE) accepts HS256 tokens signed with
	// HS256Secret (AUTH_JWT_SECRET, the public DevSecret when unset).
	// Outside dev mode HS256 is refused and the secret must be unset.
	DevMode     bool
	HS256Secret envconfig.Secret
	// UsingDevSecret is set when dev mode filled in DevSecret.
	UsingDevSecret bool

	// HTTPClient fetches the JWKS; nil is a client with a 10 s timeout
	// that also reads file:// URLs. Not read from the environment.
	HTTPClient *http.Client
	// Now is the clock of exp and nbf; nil is time.Now. For tests.
	Now func() time.Time
}

// LoadConfig reads the token settings: AUTH_JWKS_URL, AUTH_ISSUER,
// AUTH_AUDIENCE, AUTH_CLOCK_SKEW, AUTH_JWKS_REFRESH_INTERVAL,
// AUTH_JWKS_MIN_REFRESH_INTERVAL, and for dev mode AUTH_JWT_SECRET;
// devMode is FINANCE_DEV_MODE as the service read it.
func LoadConfig(r *envconfig.Reader, devMode bool) Config {
	c := Config{
		JWKSURL:            r.String("AUTH_JWKS_URL", ""),
		Issuer:             r.String("AUTH_ISSUER", ""),
		Audience:           r.String("AUTH_AUDIENCE", ""),
		ClockSkew:          r.Duration("AUTH_CLOCK_SKEW", 30*time.Second),
		RefreshInterval:    r.PositiveDuration("AUTH_JWKS_REFRESH_INTERVAL", 5*time.Minute),
		MinRefreshInterval: r.PositiveDuration("AUTH_JWKS_MIN_REFRESH_INTERVAL", 30*time.Second),
		DevMode:            devMode,
		HS256Secret:        r.Secret("AUTH_JWT_SECRET", ""),
	}
	if c.ClockSkew < 0 || c.ClockSkew > MaxClockSkew {
		r.Fail("AUTH_CLOCK_SKEW=%s: must be from 0 to %s", c.ClockSkew, MaxClockSkew)
	}
	if c.JWKSURL != "" {
		if err := checkJWKSURL(c.JWKSURL); err != nil {
			r.Fail("AUTH_JWKS_URL=%s: %v", c.JWKSURL, err)
		}
	}
	if c.DevMode {
		switch {
		case c.HS256Secret == "":
			c.HS256Secret, c.UsingDevSecret = DevSecret, true
		case len(c.HS256Secret) < MinSecretLen:
			// A short secret is refused in dev mode too: it is a mistake, not a default.
			r.Fail("AUTH_JWT_SECRET is %d bytes: it must be at least %d bytes", len(c.HS256Secret), MinSecretLen)
		}
		return c
	}
	if c.JWKSURL == "" {
		r.Fail("AUTH_JWKS_URL is not set: outside dev mode tokens are RS256 or ES256 and verified against " +
			"the identity provider's JWKS (https://..., or file:///path/jwks.json as `financectl keys generate` writes it); " +
			"set FINANCE_DEV_MODE=true on a developer machine for HS256 dev tokens")
	}
	if c.Issuer == "" {
		r.Fail("AUTH_ISSUER is not set: outside dev mode a token's iss must equal it")
	}
	if c.Audience == "" {
		r.Fail("AUTH_AUDIENCE is not set: outside dev mode a token's aud must contain it")
	}
	if c.HS256Secret != "" {
		r.Fail("AUTH_JWT_SECRET is set but FINANCE_DEV_MODE is not: HS256 tokens are accepted in dev mode only; unset it")
	}
	return c
}

func checkJWKSURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	switch u.Scheme {
	case "https", "http":
		if u.Host == "" {
			return errors.New("no host")
		}
	case "file":
		if u.Path == "" {
			return errors.New("no path")
		}
	default:
		return fmt.Errorf("scheme %q: want https, http or file", u.Scheme)
	}
	return nil
}

// LogValue is the configuration as logged at start, the secret redacted.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("jwks_url", c.JWKSURL),
		slog.String("issuer", c.Issuer),
		slog.String("audience", c.Audience),
		slog.String("clock_skew", c.ClockSkew.String()),
		slog.String("jwks_refresh_interval", c.RefreshInterval.String()),
		slog.String("jwks_min_refresh_interval", c.MinRefreshInterval.String()),
		slog.Bool("hs256_dev_tokens", c.DevMode),
		slog.Any("jwt_secret", c.HS256Secret),
	)
}

// Verifier checks bearer tokens. It is safe for concurrent use.
type Verifier struct {
	hs256 []byte // nil: HS256 refused
	jwks  keyfunc.Keyfunc
	// lookups makes concurrent tokens with one (alg, kid) share one
	// lookup: the first token signed with a rotated-in key fetches the
	// set, and the tokens that arrive while it is fetched wait for that
	// fetch instead of being refused by the refetch rate limit.
	lookups singleflight.Group
	cached  jwkset.Storage // the set as last fetched
	refetch *rate.Limiter  // fetches for unknown kids
	parser  *jwt.Parser
	stop    context.CancelFunc
}

// NewVerifier returns a Verifier of HS256 tokens signed with secret and
// nothing else: dev mode's, and the as-is service's.
func NewVerifier(secret []byte) *Verifier {
	v, _ := New(context.Background(), Config{DevMode: true, HS256Secret: envconfig.Secret(secret)}, nil)
	return v
}

// New returns a Verifier for cfg. With a JWKS URL it fetches the key set
// once (a failure is logged, not returned: the set is fetched again when a
// token needs it) and refreshes it in the background until ctx ends or Close
// is called. logger receives the refresh failures; nil discards them.
func New(ctx context.Context, cfg Config, logger *slog.Logger) (*Verifier, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	opts := []jwt.ParserOption{
		// HS256 stays in the list so that keyFor refuses it with a clear
		// message; "none" and every other alg are refused by the parser.
		jwt.WithValidMethods([]string{AlgRS256, AlgES256, AlgHS256}),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(cfg.ClockSkew),
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	if cfg.Now != nil {
		opts = append(opts, jwt.WithTimeFunc(cfg.Now))
	}
	v := &Verifier{parser: jwt.NewParser(opts...), stop: func() {}}
	if cfg.DevMode && len(cfg.HS256Secret) >= MinSecretLen {
		v.hs256 = []byte(cfg.HS256Secret.Reveal()) // never an empty or short HMAC key
	}
	if cfg.JWKSURL == "" {
		return v, nil
	}
	if err := checkJWKSURL(cfg.JWKSURL); err != nil {
		return nil, fmt.Errorf("JWKS URL %s: %w", cfg.JWKSURL, err)
	}
	client := cfg.HTTPClient
	if client == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.RegisterProtocol("file", http.NewFileTransport(http.Dir("/")))
		client = &http.Client{Transport: t, Timeout: 10 * time.Second}
	}
	refresh, minRefresh := cfg.RefreshInterval, cfg.MinRefreshInterval
	if refresh <= 0 {
		refresh = 5 * time.Minute
	}
	if minRefresh <= 0 {
		minRefresh = 30 * time.Second
	}
	ctx, v.stop = context.WithCancel(ctx)
	const fetchTimeout = 10 * time.Second
	// cached is the key set as last fetched: read without fetching, and
	// fetched again every refresh by a goroutine that ends with ctx.
	cached, err := jwkset.NewStorageFromHTTP(cfg.JWKSURL, jwkset.HTTPClientStorageOptions{
		Client:                    client,
		Ctx:                       ctx,
		HTTPTimeout:               fetchTimeout,
		NoErrorReturnFirstHTTPReq: true,
		RefreshInterval:           refresh,
		RefreshErrorHandler: func(ctx context.Context, err error) {
			logger.ErrorContext(ctx, "fetch JWKS", "url", cfg.JWKSURL, "err", err)
		},
	})
	if err != nil {
		v.stop()
		return nil, fmt.Errorf("JWKS %s: %w", cfg.JWKSURL, err)
	}
	// fetching reads the same cache but fetches the set again when a kid
	// is missing. keyFor decides when it may (v.refetch).
	fetching, err := jwkset.NewHTTPClient(jwkset.HTTPClientOptions{
		HTTPURLs:          map[string]jwkset.Storage{cfg.JWKSURL: cached},
		RefreshUnknownKID: rate.NewLimiter(rate.Inf, 1),
		RateLimitWaitMax:  fetchTimeout,
	})
	if err != nil {
		v.stop()
		return nil, fmt.Errorf("JWKS %s: %w", cfg.JWKSURL, err)
	}
	kf, err := keyfunc.New(keyfunc.Options{Ctx: ctx, Storage: fetching})
	if err != nil {
		v.stop()
		return nil, fmt.Errorf("JWKS %s: %w", cfg.JWKSURL, err)
	}
	v.cached = cached
	// A token with an unknown kid fetches the set at once, twice per
	// minRefresh at most; past that it is refused at once, so forged kids
	// can neither stall requests nor hammer the identity provider. Twice,
	// not once: a periodic fetch that began before the identity provider
	// published a new key can end after the fetch for the new kid and put
	// the old set back (TestKeyRotationUnderTraffic found it); the second
	// fetch brings the key back.
	v.refetch = rate.NewLimiter(rate.Every(minRefresh/2), 2)
	v.jwks = kf
	return v, nil
}

// Close stops the background refresh of the key set.
func (v *Verifier) Close() { v.stop() }

// FromHeader verifies an "Authorization: Bearer <token>" header value.
func (v *Verifier) FromHeader(header string) (Principal, error) {
	token, err := BearerToken(header)
	if err != nil {
		return Principal{}, err
	}
	return v.Verify(token)
}

// Verify checks token and returns its principal. Every refusal wraps
// ErrInvalidToken and says why.
func (v *Verifier) Verify(token string) (Principal, error) {
	t, err := v.VerifyToken(token)
	return t.Principal, err
}

// Verified is what a verified token says, beyond its principal: how long
// it stays valid and which key signed it, so that a cache of verified
// tokens keeps one no longer than the token and its key.
type Verified struct {
	Principal
	// ExpiresAt is the token's exp (without the clock skew's leeway).
	ExpiresAt time.Time
	// Alg and KeyID are the token's alg and kid; KeyID is empty for HS256.
	Alg   string
	KeyID string
}

// VerifyToken is Verify, also returning the token's expiry and key.
func (v *Verifier) VerifyToken(token string) (Verified, error) {
	if len(token) > MaxTokenLen {
		return Verified{}, fmt.Errorf("%w: token is %d bytes, longer than %d", ErrInvalidToken, len(token), MaxTokenLen)
	}
	var c claims
	t, err := v.parser.ParseWithClaims(token, &c, v.keyFor)
	if err != nil {
		return Verified{}, fmt.Errorf("%w: %s", ErrInvalidToken, reason(err))
	}
	p, err := principalOf(c)
	if err != nil {
		return Verified{}, err
	}
	out := Verified{Principal: p, ExpiresAt: c.ExpiresAt.Time, Alg: t.Method.Alg()} // exp is required by the parser
	if kid, ok := t.Header["kid"].(string); ok && out.Alg != AlgHS256 {
		out.KeyID = kid
	}
	return out, nil
}

// KeyPublished reports whether a token verified earlier with alg and kid
// would still find its key: the dev secret for HS256 (fixed for the
// process's life), else kid in the key set as last fetched (no fetch). A
// key the identity provider removed is unpublished once the periodic
// refresh has seen it gone.
func (v *Verifier) KeyPublished(alg, kid string) bool {
	switch alg {
	case AlgHS256:
		return v.hs256 != nil
	case AlgRS256, AlgES256:
		if v.cached == nil {
			return false
		}
		_, err := v.cached.KeyRead(context.Background(), kid)
		return err == nil
	}
	return false
}

// keyError is a refusal of keyFor, whose message is the client's detail.
type keyError string

func (e keyError) Error() string { return string(e) }

const (
	errHS256Refused keyError = "HS256 tokens are accepted in dev mode only; use an RS256 or ES256 token from the identity provider"
	errNoJWKS       keyError = "RS256 and ES256 tokens are not accepted: AUTH_JWKS_URL is not set"
)

// keyFor picks the key that must have signed t. An HS256 token is checked
// only against the dev secret, never against a JWKS key: an RSA public key
// used as an HMAC secret (alg confusion) cannot verify.
func (v *Verifier) keyFor(t *jwt.Token) (any, error) {
	switch t.Method.Alg() {
	case AlgHS256:
		if v.hs256 == nil {
			return nil, errHS256Refused
		}
		return v.hs256, nil
	case AlgRS256, AlgES256:
		if v.jwks == nil {
			return nil, errNoJWKS
		}
		kid := t.Header["kid"]
		key, err, _ := v.lookups.Do(fmt.Sprintf("%s %T %v", t.Method.Alg(), kid, kid), func() (any, error) {
			if kid, ok := kid.(string); ok {
				if _, err := v.cached.KeyRead(context.Background(), kid); errors.Is(err, jwkset.ErrKeyNotFound) && !v.refetch.Allow() {
					return nil, err
				}
			}
			return v.jwks.Keyfunc(t)
		})
		if errors.Is(err, jwkset.ErrKeyNotFound) {
			return nil, keyError(fmt.Sprintf("token's key id (kid) %q is not in the identity provider's JWKS", fmt.Sprint(kid)))
		}
		if err != nil {
			return nil, keyError("no key in the JWKS verifies this token: " + err.Error())
		}
		return key, nil
	}
	return nil, keyError(fmt.Sprintf("alg %q is not accepted", t.Method.Alg()))
}

// reason is a refusal's detail: what the client should fix, in one line.
func reason(err error) string {
	var ke keyError
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return "token is expired"
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return "token is not valid yet (nbf is in the future)"
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return "token's issuer (iss) is not the one this service trusts"
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return "token's audience (aud) does not include this service"
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		msg := err.Error() // "...: token is missing required claim: aud claim is required"
		return "token lacks a required claim: " + msg[strings.LastIndex(msg, ": ")+2:]
	case errors.As(err, &ke):
		// keyFor's own refusals: HS256 outside dev mode, an unknown kid.
		return ke.Error()
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return err.Error() // "token signature is invalid: signing method none is invalid", or the crypto error
	case errors.Is(err, jwt.ErrTokenMalformed):
		return "token is malformed"
	}
	return err.Error()
}
