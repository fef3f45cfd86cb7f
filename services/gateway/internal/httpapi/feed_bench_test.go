package httpapi_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/finsvc/finance/pkg/auth"
	"github.com/finsvc/finance/pkg/obs"
	"github.com/finsvc/finance/pkg/pgtest"
	"github.com/finsvc/finance/services/gateway/internal/cache"
	"github.com/finsvc/finance/services/gateway/internal/httpapi"
	"github.com/finsvc/finance/services/gateway/internal/store"
	"github.com/finsvc/finance/services/gateway/internal/tokencache"
)

// BenchmarkFeed serves GET /v1/users/{id}/feed through the gateway's whole
// handler (JWT, gin, JSON) against a real PostgreSQL with 1,000 users of 20
// settled payments each, rotating over the users: "full" reads the page
// every time, "if-none-match" sends the ETag of the user's page and gets
// 304. Besides ns/op, B/op and allocs/op it reports the CPU the test
// process (gateway side, pgx included) and the database's backends spent
// per request. The balance-* cases are GET /v1/users/{id}/balance, and the
// cache-hit cases go through a gateway whose read cache holds every user's
// page and balance; the *-tokencache cases check tokens through the cache
// of verified tokens, the *-es256 ones use production ES256 tokens from a
// JWKS instead of dev HS256 ones. services/legacy's BenchmarkFeed is its as-is counterpart:
//
//	go test ./services/gateway/internal/httpapi -run '^$' -bench BenchmarkFeed -benchtime 5000x -count 3
func BenchmarkFeed(b *testing.B) {
	const users, perUser = 1000, 20
	e := newEnv(b)
	for _, sql := range []string{
		`INSERT INTO wallets (user_id, balance, event_seq) SELECT g, 0, 20 FROM generate_series(1, 1000) g`,
		`INSERT INTO payments (id, user_id, merchant_id, amount, status, idempotency_key, request_hash, source)
		 SELECT g, 1 + g % 1000, 4593, 1 + g % 50, 'succeeded', 'k' || g, '', 'seed' FROM generate_series(1, 20000) g`,
		`INSERT INTO entries (user_id, payment_id, merchant_id, amount, occurred_at)
		 SELECT user_id, id, merchant_id, amount, created_at FROM payments ORDER BY id`,
		`UPDATE wallets w SET balance = s.total FROM (SELECT user_id, sum(amount) AS total FROM entries GROUP BY user_id) s WHERE s.user_id = w.user_id`,
		`VACUUM (ANALYZE) wallets, payments, entries`,
	} {
		e.exec(sql)
	}
	var getWith func(h http.Handler, token, doc string, u int, inm string) *httptest.ResponseRecorder
	tokens := make([]string, users)
	for i := range tokens {
		tokens[i] = token(b, int64(i+1), false)
	}
	// A second gateway over the same store with the read cache, large
	// enough for every user's page and balance.
	cached := httpapi.New(httpapi.Config{
		Logger: slog.New(slog.DiscardHandler), Store: store.New(e.pool), Verifier: auth.NewVerifier(testSecret),
		Registry: obs.NewRegistry(), Cache: cache.New(cache.Config{MaxBytes: 64 << 20, MaxEntries: 10_000}),
	})
	get := func(h http.Handler, doc string, u int, inm string) *httptest.ResponseRecorder {
		return getWith(h, tokens[u], doc, u, inm)
	}
	getWith = func(h http.Handler, token, doc string, u int, inm string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodGet, "/v1/users/"+strconv.Itoa(u+1)+"/"+doc, nil)
		r.Header.Set("Authorization", "Bearer "+token)
		if inm != "" {
			r.Header.Set("If-None-Match", inm)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	// A gateway without the read cache and without the contract check
	// that e.h (newEnv's handler) does on every exchange: "miss" is the
	// read path alone.
	plain := httpapi.New(httpapi.Config{
		Logger: slog.New(slog.DiscardHandler), Store: store.New(e.pool), Verifier: auth.NewVerifier(testSecret),
		Registry: obs.NewRegistry(),
	})
	// The same cached gateway with production tokens: ES256 from a JWKS
	// (file://), verified every time or through the token cache; and
	// dev HS256 tokens through the token cache.
	es256 := es256Tokens(b, users)
	esCached := func(tokens *tokencache.Cache) http.Handler {
		return httpapi.New(httpapi.Config{
			Logger: slog.New(slog.DiscardHandler), Store: store.New(e.pool), Verifier: es256.verifier, Tokens: tokens,
			Registry: obs.NewRegistry(), Cache: cache.New(cache.Config{MaxBytes: 64 << 20, MaxEntries: 10_000}),
		})
	}
	tokenCache := tokencache.Config{MaxEntries: 10_000, TTL: time.Minute}
	esVerify, esTokenCache := esCached(nil), esCached(tokencache.New(es256.verifier, tokenCache))
	hsTokenCache := httpapi.New(httpapi.Config{
		Logger: slog.New(slog.DiscardHandler), Store: store.New(e.pool), Verifier: auth.NewVerifier(testSecret),
		Tokens:   tokencache.New(auth.NewVerifier(testSecret), tokenCache),
		Registry: obs.NewRegistry(), Cache: cache.New(cache.Config{MaxBytes: 64 << 20, MaxEntries: 10_000}),
	})
	etags := map[string][]string{"feed": make([]string, users), "balance": make([]string, users)}
	for doc, tags := range etags {
		for u := range tags {
			w := get(cached, doc, u, "") // also warms the cache
			if w.Code != http.StatusOK {
				b.Fatalf("user %d: %d %s", u+1, w.Code, w.Body.String())
			}
			tags[u] = w.Header().Get("ETag")
		}
	}
	for u := range users { // warms the other gateways' caches, and the token caches
		for _, w := range []*httptest.ResponseRecorder{
			getWith(hsTokenCache, tokens[u], "balance", u, ""),
			getWith(esVerify, es256.tokens[u], "balance", u, ""),
			getWith(esTokenCache, es256.tokens[u], "balance", u, ""),
		} {
			if w.Code != http.StatusOK {
				b.Fatalf("user %d: %d %s", u+1, w.Code, w.Body.String())
			}
		}
	}
	// "full": no cache, through e.h's contract check; "miss": no cache, no
	// contract check; "cache-hit": the wallet read, then the cached
	// bytes; "if-none-match": the wallet read, then 304.
	for _, bc := range []struct {
		name, doc string
		h         http.Handler
		inm       bool
		want      int
		es256     bool
	}{
		{"full", "feed", e.h, false, http.StatusOK, false},
		{"miss", "feed", plain, false, http.StatusOK, false},
		{"cache-hit", "feed", cached, false, http.StatusOK, false},
		{"if-none-match", "feed", e.h, true, http.StatusNotModified, false},
		{"balance-full", "balance", e.h, false, http.StatusOK, false},
		{"balance-cache-hit", "balance", cached, false, http.StatusOK, false},
		{"balance-if-none-match", "balance", e.h, true, http.StatusNotModified, false},
		{"balance-cache-hit-tokencache", "balance", hsTokenCache, false, http.StatusOK, false},
		{"balance-cache-hit-es256", "balance", esVerify, false, http.StatusOK, true},
		{"balance-cache-hit-es256-tokencache", "balance", esTokenCache, false, http.StatusOK, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			cpu := pgtest.StartCPU(b, e.pool)
			i := 0
			for b.Loop() {
				u := i % users
				i++
				inm := ""
				if bc.inm {
					inm = etags[bc.doc][u]
				}
				tok := tokens[u]
				if bc.es256 {
					tok = es256.tokens[u]
				}
				if w := getWith(bc.h, tok, bc.doc, u, inm); w.Code != bc.want {
					b.Fatalf("user %d: status %d, want %d", u+1, w.Code, bc.want)
				}
			}
			cpu.Report(b, i, "op")
		})
	}
}

// es256 is a production verifier (ES256 keys from a file:// JWKS) and a
// token of it for each user.
type es256 struct {
	verifier *auth.Verifier
	tokens   []string
}

func es256Tokens(b *testing.B, users int) es256 {
	b.Helper()
	key, err := auth.GenerateKey(auth.AlgES256)
	if err != nil {
		b.Fatal(err)
	}
	kid, err := auth.KeyID(key.Public())
	if err != nil {
		b.Fatal(err)
	}
	raw, err := auth.PublicJWKS(nil, key)
	if err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(b.TempDir(), "jwks.json")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		b.Fatal(err)
	}
	const iss, aud = "https://idp.test/", "finance-api"
	v, err := auth.New(context.Background(), auth.Config{JWKSURL: "file://" + path, Issuer: iss, Audience: aud}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(v.Close)
	out := es256{verifier: v, tokens: make([]string, users)}
	now := time.Now()
	for i := range out.tokens {
		if out.tokens[i], err = auth.Sign(key, kid, auth.Claims{UserID: int64(i + 1), Issuer: iss, Audience: aud,
			IssuedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
			b.Fatal(err)
		}
	}
	return out
}
