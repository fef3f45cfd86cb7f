package httpapi_test

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/finsvc/finance/pkg/auth"
	"github.com/finsvc/finance/pkg/dlq"
	"github.com/finsvc/finance/pkg/kafka"
	"github.com/finsvc/finance/pkg/kafkatest"
	"github.com/finsvc/finance/pkg/obs"
	"github.com/finsvc/finance/pkg/pgtest"
	"github.com/finsvc/finance/pkg/postgres"
	"github.com/finsvc/finance/pkg/problem"
	"github.com/finsvc/finance/pkg/webhook"
	"github.com/finsvc/finance/services/gateway/internal/console"
	"github.com/finsvc/finance/services/gateway/internal/httpapi"
	"github.com/finsvc/finance/services/gateway/internal/push"
	"github.com/finsvc/finance/services/gateway/internal/store"
)

// The identities of the authorization matrix, in column order.
type caller int

const (
	noToken caller = iota
	expiredToken
	forgedToken   // signed with another key, under the real key's kid
	wrongAudience // a valid signature for another API
	self          // the user whose resource the request names
	otherUser     // another user, not admin
	adminUser     // scope admin
	callers
)

var callerNames = [callers]string{"no token", "expired token", "forged token", "wrong audience", "the user itself", "another user", "admin"}

const (
	matrixUser  = 7
	matrixOther = 8
	matrixAdmin = 1
)

// matrixEnv is a gateway with every route live: the production verifier
// (RS256/ES256 against a test JWKS, issuer and audience checked), PostgreSQL,
// a Kafka-protocol broker serving the push hub and the DLQ operator, and
// the webhook store; rate limits off.
type matrixEnv struct {
	*env
	srv      *httptest.Server
	html     *httptest.Server // the same handler, unchecked: the console
	tokens   [callers]string
	webhooks *webhook.Store
	letter   dlq.Entry // user 7's dead letter
	seq      atomic.Int64
}

func newMatrixEnv(t *testing.T) *matrixEnv {
	t.Helper()
	ctx := context.Background()
	key, err := auth.GenerateKey(auth.AlgES256)
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := auth.GenerateKey(auth.AlgES256)
	if err != nil {
		t.Fatal(err)
	}
	jwks, err := auth.PublicJWKS(nil, key)
	if err != nil {
		t.Fatal(err)
	}
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(jwks) }))
	t.Cleanup(idp.Close)
	v, err := auth.New(ctx, auth.Config{
		JWKSURL: idp.URL, Issuer: prodIssuer, Audience: prodAudience, ClockSkew: 30 * time.Second,
		RefreshInterval: time.Hour, MinRefreshInterval: time.Hour,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	kid, err := auth.KeyID(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	sign := func(k crypto.Signer, c auth.Claims) string {
		if c.Issuer == "" {
			c.Issuer = prodIssuer
		}
		if c.Audience == "" {
			c.Audience = prodAudience
		}
		c.IssuedAt = now.Add(-2 * time.Hour)
		if c.ExpiresAt.IsZero() {
			c.ExpiresAt = now.Add(time.Hour)
		}
		tok, err := auth.Sign(k, kid, c)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}

	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	cluster := kafkatest.New(t, 2, append(kafka.Topics(), kafka.DLQTopics()...))
	pool, err := postgres.Connect(ctx, pgtest.NewDB(t), 6)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	st := store.New(pool)
	batchCtx, stop := context.WithCancel(context.Background())
	wait := st.StartBatching(batchCtx, store.BatchConfig{Workers: 1, MaxBatch: 8, Logger: logger})
	t.Cleanup(func() { stop(); wait() })

	op, err := dlq.NewOperator(cluster.Brokers(), pool, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(op.Close)
	reg := obs.NewRegistry()
	hub := push.New(push.Config{Logger: logger, Registry: reg})
	hubClient, err := push.NewClient(cluster.Brokers(), logger, now)
	if err != nil {
		t.Fatal(err)
	}
	hubCtx, cancelHub := context.WithCancel(context.Background())
	hubDone := make(chan struct{})
	go func() { defer close(hubDone); _ = hub.Consume(hubCtx, hubClient) }()
	t.Cleanup(func() { cancelHub(); <-hubDone; hubClient.Close() })

	wh := webhook.NewStore(pool)
	// The console, without a processor: resolving answers 503.
	con, err := console.New(console.Config{Logger: logger, Pool: pool, Verify: v.FromHeader, DLQ: op, Webhooks: wh})
	if err != nil {
		t.Fatal(err)
	}
	h := httpapi.New(httpapi.Config{
		Logger: logger, Store: st, Verifier: v, Registry: reg,
		DLQ: op, Hub: hub, Webhooks: wh, WebhookPolicy: webhook.Policy{}, Console: con,
		// Limits: the zero value, no rate limit, so that no cell is a 429.
	})
	m := &matrixEnv{env: &env{t: t, pool: pool, h: h}, webhooks: wh}
	m.srv = httptest.NewServer(checked(t, h))
	t.Cleanup(m.srv.Close)
	// The console's pages are HTML, not the API of docs/openapi.yaml.
	m.html = httptest.NewServer(h)
	t.Cleanup(m.html.Close)

	m.tokens = [callers]string{
		noToken:       "",
		expiredToken:  sign(key, auth.Claims{UserID: matrixUser, ExpiresAt: now.Add(-time.Hour)}),
		forgedToken:   sign(stranger, auth.Claims{UserID: matrixUser}),
		wrongAudience: sign(key, auth.Claims{UserID: matrixUser, Audience: "another-api"}),
		self:          sign(key, auth.Claims{UserID: matrixUser}),
		otherUser:     sign(key, auth.Claims{UserID: matrixOther}),
		adminUser:     sign(key, auth.Claims{UserID: matrixAdmin, Admin: true}),
	}

	m.exec(`INSERT INTO merchants (id, name) VALUES (4593, 'Amazon')`)
	m.wallet(matrixUser, 1_000_000)
	m.wallet(matrixOther, 1_000_000)
	m.entry(matrixUser, 100, 4593, -500, now.Add(-time.Hour))

	cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.Brokers()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	rec := &kgo.Record{Topic: kafka.TopicOutcomes, Key: kafka.UserKey(matrixUser), Value: []byte("x")}
	if err := dlq.Publish(ctx, cl, rec, dlq.Letter{Reason: "unknown_payment", Err: errors.New("payment 100 not found"), Attempts: 1, PaymentID: 100, UserID: matrixUser}); err != nil {
		t.Fatal(err)
	}
	letters, err := op.List(ctx, dlq.Filter{UserID: matrixUser})
	if err != nil || len(letters) != 1 {
		t.Fatalf("dead letters: %v %v", letters, err)
	}
	m.letter = letters[0]
	return m
}

// endpoint registers a fresh webhook endpoint of user 7 with one failed
// message and one attempt, for a cell to read or change on its own.
func (m *matrixEnv) endpoint() string {
	m.t.Helper()
	ctx := context.Background()
	uid := int64(matrixUser)
	e, err := m.webhooks.Create(ctx, webhook.Spec{URL: "https://93.184.215.14/hook", UserID: &uid, Enabled: true, CreatedBy: "matrix"})
	if err != nil {
		m.t.Fatal(err)
	}
	var msg int64
	if err := m.pool.QueryRow(ctx, `INSERT INTO webhook_messages (endpoint_id, user_id, event_id, event_type, payment_id, payload, state, attempts)
		VALUES ($1, $2, '100:succeeded', 'payment.succeeded', 100, '{}', 'failed', 1) RETURNING id`, e.ID, matrixUser).Scan(&msg); err != nil {
		m.t.Fatal(err)
	}
	m.exec(`INSERT INTO webhook_attempts (message_id, endpoint_id, user_id, event_id, attempt, status_code, latency_ms, response)
		VALUES ($1, $2, $3, '100:succeeded', 1, 500, 12, 'oops')`, msg, e.ID, matrixUser)
	return e.ID.String()
}

// cell is one request of the matrix.
type cell struct {
	path, body string
	header     map[string]string
}

// matrixRow is one route: how to make its request (fresh resources for
// routes that change them) and the answer of the callers with a valid
// token. The four callers without one answer 401, or 200 on public routes.
type matrixRow struct {
	method, route string // as gin has it
	public        bool
	request       func(m *matrixEnv) cell
	self, other   int
	admin         int
	// console: an operator console route, its answers HTML; the token goes
	// in the session cookie or, with form, in the sign-in form's token
	// field. noneTo is the no-token caller's answer when it is not 401.
	console, form bool
	noneTo        int
}

func matrixRows() []matrixRow {
	payment := func(m *matrixEnv) cell {
		return cell{path: "", body: paymentBody(matrixUser, 4593, -100),
			header: map[string]string{"Idempotency-Key": "matrix-" + strconv.FormatInt(m.seq.Add(1), 10)}}
	}
	at := func(path string) func(*matrixEnv) cell { return func(*matrixEnv) cell { return cell{path: path} } }
	ep := func(suffix string) func(*matrixEnv) cell {
		return func(m *matrixEnv) cell { return cell{path: "/v1/webhooks/endpoints/" + m.endpoint() + suffix} }
	}
	since := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	return []matrixRow{
		{method: "GET", route: "/healthz", public: true, request: at("/healthz"), self: 200, other: 200, admin: 200},
		{method: "GET", route: "/readyz", public: true, request: at("/readyz"), self: 200, other: 200, admin: 200},
		{method: "GET", route: "/metrics", public: true, request: at("/metrics"), self: 200, other: 200, admin: 200},

		{method: "GET", route: "/v1/users/:user_id/feed", request: at("/v1/users/7/feed"), self: 200, other: 403, admin: 200},
		{method: "GET", route: "/v1/users/:user_id/balance", request: at("/v1/users/7/balance"), self: 200, other: 403, admin: 200},
		{method: "GET", route: "/v1/users/:user_id/events", request: at("/v1/users/7/events"), self: 200, other: 403, admin: 200},
		{method: "POST", route: "/v1/payments", request: func(m *matrixEnv) cell {
			c := payment(m)
			c.path = "/v1/payments"
			return c
		}, self: 202, other: 403, admin: 202},
		{method: "GET", route: "/v1/payments/:id", request: at("/v1/payments/100"), self: 200, other: 404, admin: 200},
		{method: "GET", route: "/payment_feed", request: at("/payment_feed?user_id=7"), self: 200, other: 403, admin: 200},
		{method: "POST", route: "/payment", request: func(m *matrixEnv) cell {
			c := payment(m)
			c.path = "/payment"
			return c
		}, self: 202, other: 403, admin: 202},

		{method: "POST", route: "/v1/webhooks/endpoints", request: func(*matrixEnv) cell {
			return cell{path: "/v1/webhooks/endpoints", body: `{"url":"https://93.184.215.14/hook","user_id":7,"event_types":["payment.succeeded"]}`}
		}, self: 201, other: 403, admin: 201},
		{method: "GET", route: "/v1/webhooks/endpoints", request: at("/v1/webhooks/endpoints?user_id=7"), self: 200, other: 403, admin: 200},
		{method: "GET", route: "/v1/webhooks/endpoints/:id", request: ep(""), self: 200, other: 404, admin: 200},
		{method: "PATCH", route: "/v1/webhooks/endpoints/:id", request: func(m *matrixEnv) cell {
			return cell{path: ep("")(m).path, body: `{"description":"changed"}`}
		}, self: 200, other: 404, admin: 200},
		{method: "DELETE", route: "/v1/webhooks/endpoints/:id", request: ep(""), self: 204, other: 404, admin: 204},
		{method: "POST", route: "/v1/webhooks/endpoints/:id/rotate-secret", request: ep("/rotate-secret?overlap=1h"), self: 200, other: 404, admin: 200},
		{method: "GET", route: "/v1/webhooks/endpoints/:id/attempts", request: ep("/attempts"), self: 200, other: 404, admin: 200},
		{method: "POST", route: "/v1/webhooks/endpoints/:id/messages/:event_id/resend", request: ep("/messages/100:succeeded/resend"), self: 202, other: 404, admin: 202},
		{method: "POST", route: "/v1/webhooks/endpoints/:id/recover", request: ep("/recover?since=" + since), self: 202, other: 404, admin: 202},

		{method: "GET", route: "/v1/admin/dlq", request: at("/v1/admin/dlq?user_id=7"), self: 403, other: 403, admin: 200},
		{method: "GET", route: "/v1/admin/dlq/:topic/:partition/:offset", request: func(m *matrixEnv) cell {
			l := m.letter
			return cell{path: "/v1/admin/dlq/" + l.Topic + "/" + strconv.Itoa(int(l.Partition)) + "/" + strconv.FormatInt(l.Offset, 10)}
		}, self: 403, other: 403, admin: 200},
		{method: "POST", route: "/v1/admin/dlq/replay", request: at("/v1/admin/dlq/replay?topic=payments.outcomes&user_id=7&dry_run=true"), self: 403, other: 403, admin: 200},

		// The operator console: admins only, signed in by cookie.
		{method: "GET", route: "/console/static/*file", console: true, public: true, request: at("/console/static/console.css"), self: 200, other: 200, admin: 200},
		{method: "GET", route: "/console/login", console: true, public: true, request: at("/console/login"), self: 200, other: 200, admin: 200},
		{method: "POST", route: "/console/login", console: true, form: true, request: at("/console/login"),
			noneTo: 400, self: 403, other: 403, admin: 303},
		{method: "POST", route: "/console/logout", console: true, request: at("/console/logout"), self: 403, other: 403, admin: 303},
		{method: "GET", route: "/console", console: true, request: at("/console"), self: 403, other: 403, admin: 200},
		{method: "GET", route: "/console/overview", console: true, request: at("/console/overview"), self: 403, other: 403, admin: 200},
		{method: "GET", route: "/console/dlq", console: true, request: at("/console/dlq?user_id=7"), self: 403, other: 403, admin: 200},
		{method: "GET", route: "/console/dlq/:topic/:partition/:offset", console: true, request: func(m *matrixEnv) cell {
			l := m.letter
			return cell{path: "/console/dlq/" + l.Topic + "/" + strconv.Itoa(int(l.Partition)) + "/" + strconv.FormatInt(l.Offset, 10)}
		}, self: 403, other: 403, admin: 200},
		{method: "POST", route: "/console/dlq/replay", console: true, request: func(m *matrixEnv) cell {
			l := m.letter
			return cell{path: "/console/dlq/replay", body: url.Values{"topic": {l.Topic}, "partition": {strconv.Itoa(int(l.Partition))},
				"offset": {strconv.FormatInt(l.Offset, 10)}, "dry_run": {"true"}}.Encode()}
		}, self: 403, other: 403, admin: 200},
		{method: "GET", route: "/console/unknown", console: true, request: at("/console/unknown"), self: 403, other: 403, admin: 200},
		{method: "POST", route: "/console/unknown/:id/resolve", console: true, request: at("/console/unknown/100/resolve"), self: 403, other: 403, admin: 503},
		{method: "GET", route: "/console/reconcile", console: true, request: at("/console/reconcile"), self: 403, other: 403, admin: 200},
		{method: "POST", route: "/console/reconcile", console: true, request: at("/console/reconcile"), self: 403, other: 403, admin: 503},
		{method: "GET", route: "/console/webhooks", console: true, request: at("/console/webhooks"), self: 403, other: 403, admin: 200},
	}
}

// want is the cell's expected status.
func (r matrixRow) want(c caller) int {
	switch c {
	case self:
		return r.self
	case otherUser:
		return r.other
	case adminUser:
		return r.admin
	}
	if r.public {
		return http.StatusOK
	}
	if c == noToken && r.noneTo != 0 {
		return r.noneTo
	}
	return http.StatusUnauthorized
}

// TestAuthorizationMatrix crosses every route of the gateway with every
// kind of caller, through HTTP against PostgreSQL and a broker, each cell
// with one expected status; refusals are problem+json with their status
// and change nothing; every exchange is also checked against
// docs/openapi.yaml. A gin route without a row fails the test by name, so
// a route added later must be added here.
func TestAuthorizationMatrix(t *testing.T) {
	t.Parallel()
	m := newMatrixEnv(t)
	rows := matrixRows()

	covered := map[string]bool{}
	for _, r := range rows {
		covered[r.method+" "+r.route] = true
	}
	e, ok := m.h.(interface{ Routes() gin.RoutesInfo })
	if !ok {
		t.Fatalf("httpapi.New returned %T, which has no gin route table", m.h)
	}
	for _, ri := range e.Routes() {
		if !covered[ri.Method+" "+ri.Path] {
			t.Errorf("route %s %s has no rows in the authorization matrix: add one to matrixRows", ri.Method, ri.Path)
		}
		delete(covered, ri.Method+" "+ri.Path)
	}
	for r := range covered {
		t.Errorf("matrix row %s is not a gin route", r)
	}

	for _, r := range rows {
		for c := range callers {
			t.Run(r.method+" "+r.route+"/"+callerNames[c], func(t *testing.T) {
				m.check(t, r, c)
			})
		}
	}
}

// writes is what a refused request must leave unchanged.
const writes = `SELECT (SELECT count(*) FROM payments) + (SELECT count(*) FROM webhook_endpoints) * 1000000
	+ (SELECT count(*) FROM outbox) * 1000000000000 + (SELECT coalesce(sum(held), 0) FROM wallets)`

func (m *matrixEnv) check(t *testing.T, r matrixRow, c caller) {
	t.Helper()
	cl := r.request(m)
	want := r.want(c)
	before := m.count(writes)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var body io.Reader
	if cl.body != "" {
		body = strings.NewReader(cl.body)
	}
	srv := m.srv
	if r.console {
		srv = m.html
		if r.form {
			body = strings.NewReader(url.Values{"token": {m.tokens[c]}}.Encode())
		}
	}
	req, err := http.NewRequestWithContext(ctx, r.method, srv.URL+cl.path, body)
	if err != nil {
		t.Fatal(err)
	}
	if cl.body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	switch tok := m.tokens[c]; {
	case r.console:
		// A browser on the console's own pages: a same-origin form post,
		// the token in the session cookie.
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		if tok != "" && !r.form {
			req.AddCookie(&http.Cookie{Name: console.CookieName, Value: tok})
		}
	case tok != "":
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	for k, v := range cl.header {
		req.Header.Set(k, v)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("Content-Type") == "text/event-stream" {
		cancel() // a stream that was opened is all this cell needs
		if resp.StatusCode != want {
			t.Errorf("%s %s as %s: %d, want %d", r.method, cl.path, callerNames[c], resp.StatusCode, want)
		}
		return
	}
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != want {
		t.Fatalf("%s %s as %s: %d, want %d; body %s", r.method, cl.path, callerNames[c], resp.StatusCode, want, data)
	}
	if want < 400 {
		return
	}
	if r.console {
		// A page that says what went wrong, not a problem document.
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") || !strings.Contains(string(data), `class="error"`) {
			t.Errorf("console refusal: Content-Type %q, body %s; want an HTML page with the error", ct, data)
		}
		if after := m.count(writes); after != before {
			t.Errorf("a refused request changed payments, endpoints, outbox or holds (%d → %d)", before, after)
		}
		return
	}
	if ct := resp.Header.Get("Content-Type"); ct != problem.ContentType {
		t.Errorf("Content-Type = %q, want %q", ct, problem.ContentType)
	}
	var p problem.Details
	if err := json.Unmarshal(data, &p); err != nil || p.Status != want || p.Title == "" || p.Detail == "" ||
		!strings.HasPrefix(p.Type, problem.TypeBase) {
		t.Errorf("problem %s (%v): want status %d, a type, a title and a detail", data, err, want)
	}
	if want == http.StatusUnauthorized && resp.Header.Get("WWW-Authenticate") == "" {
		t.Error("401 without WWW-Authenticate")
	}
	if after := m.count(writes); after != before {
		t.Errorf("a refused request changed payments, endpoints, outbox or holds (%d → %d)", before, after)
	}
}
