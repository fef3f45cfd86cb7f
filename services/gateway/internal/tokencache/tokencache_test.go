package tokencache_test

import (
	"context"
	"crypto"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/finsvc/finance/pkg/auth"
	"github.com/finsvc/finance/pkg/testkit"
	"github.com/finsvc/finance/services/gateway/internal/tokencache"
)

const (
	issuer   = "https://idp.test/"
	audience = "finance-api"
)

type bundle struct {
	cache    *tokencache.Cache
	verifier *auth.Verifier
	reg      *prometheus.Registry
	clock    *testkit.Clock
	key      crypto.Signer
	kid      string
	// publish replaces the JWKS the identity provider serves.
	publish func(keys ...crypto.Signer)
}

// setup returns a cache of maxEntries and ttl in front of a production
// verifier (ES256 from a JWKS served over HTTP, refreshed every 20 ms, no
// clock skew), both on one settable clock.
func setup(t testing.TB, maxEntries int, ttl time.Duration) bundle {
	t.Helper()
	key, err := auth.GenerateKey(auth.AlgES256)
	if err != nil {
		t.Fatal(err)
	}
	kid, err := auth.KeyID(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	var body atomic.Pointer[[]byte]
	publish := func(keys ...crypto.Signer) {
		raw, err := auth.PublicJWKS(nil, keys...)
		if err != nil {
			t.Fatal(err)
		}
		body.Store(&raw)
	}
	publish(key)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(*body.Load())
	}))
	t.Cleanup(srv.Close)
	clk := testkit.NewClock(time.Unix(1_800_000_000, 0))
	v, err := auth.New(context.Background(), auth.Config{
		JWKSURL: srv.URL, Issuer: issuer, Audience: audience,
		RefreshInterval: 20 * time.Millisecond, MinRefreshInterval: time.Hour, Now: clk.Now,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	reg := prometheus.NewRegistry()
	c := tokencache.New(v, tokencache.Config{MaxEntries: maxEntries, TTL: ttl, Registry: reg, Now: clk.Now})
	return bundle{cache: c, verifier: v, reg: reg, clock: clk, key: key, kid: kid, publish: publish}
}

func (b bundle) token(t testing.TB, user int64, ttl time.Duration) string {
	t.Helper()
	now := b.clock.Now()
	tok, err := auth.Sign(b.key, b.kid, auth.Claims{UserID: user, Issuer: issuer, Audience: audience, IssuedAt: now, ExpiresAt: now.Add(ttl)})
	if err != nil {
		t.Fatal(err)
	}
	return "Bearer " + tok
}

// counts returns the cache's hit, miss and refused counters.
func (b bundle) counts(t *testing.T) [3]int {
	t.Helper()
	mfs, err := b.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out [3]int
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for i, r := range []string{"hit", "miss", "refused"} {
				if m.GetLabel()[0].GetValue() == r {
					out[i] = int(m.GetCounter().GetValue())
				}
			}
		}
	}
	return out
}

func (b bundle) want(t *testing.T, user int64, header string) {
	t.Helper()
	p, err := b.cache.FromHeader(header)
	if err != nil || p.UserID != user || p.Admin {
		t.Fatalf("FromHeader: %+v, %v; want user %d", p, err, user)
	}
}

func (b bundle) refused(t *testing.T, header string) {
	t.Helper()
	if p, err := b.cache.FromHeader(header); !errors.Is(err, auth.ErrInvalidToken) {
		t.Fatalf("FromHeader: %+v, %v; want refused", p, err)
	}
}

func TestRepeatedTokenIsAHit(t *testing.T) {
	t.Parallel()
	b := setup(t, 100, time.Minute)
	tok := b.token(t, 7, time.Hour)
	for range 3 {
		b.want(t, 7, tok)
	}
	b.want(t, 8, b.token(t, 8, time.Hour))
	if got, want := b.counts(t), [3]int{2, 2, 0}; got != want {
		t.Errorf("hit, miss, refused = %v, want %v", got, want)
	}
}

// An entry lives until the token's exp and at most TTL: past exp the token
// is verified again, and refused.
func TestEntryEndsAtExpOrTTL(t *testing.T) {
	t.Parallel()
	b := setup(t, 100, time.Minute)
	short, long := b.token(t, 1, 30*time.Second), b.token(t, 2, time.Hour)
	b.want(t, 1, short)
	b.want(t, 2, long)
	b.clock.Add(29 * time.Second)
	b.want(t, 1, short) // hit
	b.want(t, 2, long)  // hit
	b.clock.Add(2 * time.Second)
	b.refused(t, short) // past exp: verified again, refused
	b.want(t, 2, long)  // hit: within the TTL
	b.clock.Add(30 * time.Second)
	b.want(t, 2, long) // past the TTL: verified again
	b.want(t, 2, long) // and cached again
	if got, want := b.counts(t), [3]int{4, 3, 1}; got != want {
		t.Errorf("hit, miss, refused = %v, want %v", got, want)
	}
}

// A cached token of a key the identity provider removed from its JWKS is
// refused once the verifier's refresh sees the key gone, though its entry
// has neither expired nor reached the TTL.
func TestRemovedKeyStopsCachedTokens(t *testing.T) {
	t.Parallel()
	b := setup(t, 100, time.Hour)
	tok := b.token(t, 5, 2*time.Hour)
	b.want(t, 5, tok)
	b.want(t, 5, tok)
	if got := b.counts(t); got[0] != 1 {
		t.Fatalf("hit, miss, refused = %v, want one hit before the removal", got)
	}
	other, err := auth.GenerateKey(auth.AlgES256)
	if err != nil {
		t.Fatal(err)
	}
	b.publish(other)
	testkit.Eventually(t, "the removed key's cached token is refused", func() bool {
		_, err := b.cache.FromHeader(tok)
		return err != nil
	})
	b.refused(t, tok)
}

// Refusals are never cached: a forged token is checked, and refused, each
// time.
func TestRefusalsAreNotCached(t *testing.T) {
	t.Parallel()
	b := setup(t, 100, time.Minute)
	forger, err := auth.GenerateKey(auth.AlgES256)
	if err != nil {
		t.Fatal(err)
	}
	now := b.clock.Now()
	forged, err := auth.Sign(forger, b.kid, auth.Claims{UserID: 9, Issuer: issuer, Audience: audience, ExpiresAt: now.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		b.refused(t, "Bearer "+forged)
	}
	b.refused(t, "Basic abc")
	if got, want := b.counts(t), [3]int{0, 0, 4}; got != want {
		t.Errorf("hit, miss, refused = %v, want %v", got, want)
	}
}

// The cache holds MaxEntries tokens at most, least recently used out first.
func TestBounded(t *testing.T) {
	t.Parallel()
	b := setup(t, 2, time.Minute)
	t1, t2, t3 := b.token(t, 1, time.Hour), b.token(t, 2, time.Hour), b.token(t, 3, time.Hour)
	b.want(t, 1, t1) // miss
	b.want(t, 2, t2) // miss
	b.want(t, 1, t1) // hit: 2 is now the least recently used
	b.want(t, 3, t3) // miss, evicts 2
	b.want(t, 1, t1) // hit
	b.want(t, 2, t2) // miss again
	if got, want := b.counts(t), [3]int{2, 4, 0}; got != want {
		t.Errorf("hit, miss, refused = %v, want %v", got, want)
	}
}

// Off (MaxEntries 0): every token is verified, nothing counted.
func TestOff(t *testing.T) {
	t.Parallel()
	b := setup(t, 0, time.Minute)
	tok := b.token(t, 4, time.Hour)
	b.want(t, 4, tok)
	b.want(t, 4, tok)
	if got, want := b.counts(t), [3]int{0, 0, 0}; got != want {
		t.Errorf("hit, miss, refused = %v, want %v", got, want)
	}
}

// BenchmarkFromHeader is the cost of an ES256 token's check: "verify" is
// the verifier alone (signature and claims every time), "cached" the same
// token served by the cache.
//
//	go test ./services/gateway/internal/tokencache -run '^$' -bench FromHeader
func BenchmarkFromHeader(b *testing.B) {
	bb := setup(b, 100, time.Minute)
	tok := bb.token(b, 7, time.Hour)
	b.Run("verify", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := bb.verifier.FromHeader(tok); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cached", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := bb.cache.FromHeader(tok); err != nil {
				b.Fatal(err)
			}
		}
	})
}
