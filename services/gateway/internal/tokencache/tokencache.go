// Package tokencache keeps the bearer tokens the gateway has verified, so
// that a client's repeated requests with the same token skip the signature
// check (tens of µs for ES256 and RS256, a few for HS256): the profile of
// the read path showed verification as the largest cost after the wallet's
// read (docs/profiles/README.md, "gateway, reads").
//
// An entry is keyed by the SHA-256 of the token (the token itself is not
// kept) and holds the principal it verified to. It is served only:
//
//   - until the token's exp (never the clock skew's leeway on top), and no
//     longer than TTL after it was verified;
//   - while the key that signed it is still published: every hit asks the
//     verifier whether the token's kid is still in the key set as last
//     fetched (auth.Verifier.KeyPublished), so a key the identity provider
//     removed stops its cached tokens as soon as the verifier's refresh sees
//     it gone, exactly when an uncached token of that key is refused.
//
// Refusals are not cached: a bad token pays the full check every time, and
// cannot push good tokens out. Bearer tokens have no revocation list here
// (the verifier checks signature, iss, aud, exp, nbf only), so the cache
// changes no answer: a token it accepts, the verifier would accept too,
// except that the TTL keeps a token alive for at most TTL after a change of
// AUTH_ISSUER/AUTH_AUDIENCE, which needs a restart anyway (the cache is in
// memory).
//
// The cache is bounded in entries (hashicorp/golang-lru/v2, least recently
// used first), about 270 bytes of heap each (12.9 MiB for 50,000 ES256
// tokens, measured with runtime.MemStats). A hash, not the token, is the key: a 64-bit hash would let
// a forged token that collides with a real one pass as its principal;
// SHA-256 collisions cannot be found.
package tokencache

import (
	"crypto/sha256"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/finsvc/finance/pkg/auth"
)

// Defaults of Config.
const (
	DefaultMaxEntries = 50_000
	DefaultTTL        = time.Minute
	// MaxTTL bounds Config.TTL: an entry outlives no removal of its key
	// (checked on every hit) but would outlive a restart's new
	// AUTH_ISSUER/AUTH_AUDIENCE no longer than the process anyway; a bound
	// keeps the cache's promise short and explainable.
	MaxTTL = time.Hour
)

// Config bounds the cache. MaxEntries or TTL of 0 or less turn it off:
// every token is verified.
type Config struct {
	MaxEntries int
	TTL        time.Duration
	// Registry receives gateway_token_cache_total{result}; nil registers
	// none.
	Registry prometheus.Registerer
	// Now is the clock; nil is time.Now. For tests.
	Now func() time.Time
}

// Cache verifies bearer tokens through an auth.Verifier and remembers the
// good ones. It is safe for concurrent use.
type Cache struct {
	v       *auth.Verifier
	entries *lru.Cache[[sha256.Size]byte, entry] // nil: off
	ttl     time.Duration
	now     func() time.Time
	results *prometheus.CounterVec
}

type entry struct {
	p     auth.Principal
	until time.Time
	alg   string
	kid   string
}

// New returns a cache in front of v.
func New(v *auth.Verifier, cfg Config) *Cache {
	c := &Cache{v: v, ttl: cfg.TTL, now: cfg.Now}
	if c.now == nil {
		c.now = time.Now
	}
	if cfg.MaxEntries > 0 && cfg.TTL > 0 {
		c.entries, _ = lru.New[[sha256.Size]byte, entry](cfg.MaxEntries) // fails only for a size <= 0
	}
	c.results = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gateway_token_cache_total",
		Help: "Bearer tokens checked, by result: hit (a verified token, its key still published), miss (verified now), refused.",
	}, []string{"result"})
	if cfg.Registry != nil {
		cfg.Registry.MustRegister(c.results)
	}
	return c
}

// FromHeader is auth.Verifier.FromHeader, served from the cache when the
// token was verified before and its entry is still good.
func (c *Cache) FromHeader(header string) (auth.Principal, error) {
	if c.entries == nil {
		return c.v.FromHeader(header)
	}
	token, err := auth.BearerToken(header)
	if err != nil {
		c.results.WithLabelValues("refused").Inc()
		return auth.Principal{}, err
	}
	key := sha256.Sum256([]byte(token))
	now := c.now()
	if e, ok := c.entries.Get(key); ok {
		if now.Before(e.until) && c.v.KeyPublished(e.alg, e.kid) {
			c.results.WithLabelValues("hit").Inc()
			return e.p, nil
		}
		c.entries.Remove(key)
	}
	t, err := c.v.VerifyToken(token)
	if err != nil {
		c.results.WithLabelValues("refused").Inc()
		return auth.Principal{}, err
	}
	c.results.WithLabelValues("miss").Inc()
	until := now.Add(c.ttl)
	if t.ExpiresAt.Before(until) {
		until = t.ExpiresAt
	}
	if now.Before(until) {
		c.entries.Add(key, entry{p: t.Principal, until: until, alg: t.Alg, kid: t.KeyID})
	}
	return t.Principal, nil
}
