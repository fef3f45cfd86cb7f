package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"

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

// newHostileEnv is a gateway with every route on: the webhook endpoints
// (the production URL policy), the DLQ admin on a broker, a push hub (fed
// by nothing: no request here gets as far as streaming) and the console.
// errorLogs counts what the gateway logs at ERROR: a refused request is no
// server fault, so it logs none.
func newHostileEnv(t *testing.T) (e *env, errorLogs *atomic.Int64) {
	t.Helper()
	ctx := context.Background()
	pool, err := postgres.Connect(ctx, pgtest.NewDB(t), 8)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(pool.Close)
	errorLogs = new(atomic.Int64)
	logger := slog.New(errorCounter{slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}), errorLogs})
	st := store.New(pool)
	batchCtx, stop := context.WithCancel(context.Background())
	wait := st.StartBatching(batchCtx, store.BatchConfig{Workers: 2, MaxBatch: 32, Logger: logger})
	t.Cleanup(func() { stop(); wait() })
	cluster := kafkatest.New(t, 1, append(kafka.Topics(), kafka.DLQTopics()...))
	op, err := dlq.NewOperator(cluster.Brokers(), pool, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(op.Close)
	verifier := auth.NewVerifier(testSecret)
	hooks := webhook.NewStore(pool)
	con, err := console.New(console.Config{Logger: logger, Pool: pool, Verify: verifier.FromHeader, DLQ: op, Webhooks: hooks})
	if err != nil {
		t.Fatal(err)
	}
	reg := obs.NewRegistry()
	h := checked(t, httpapi.New(httpapi.Config{
		Logger: logger, Store: st, Verifier: verifier, Registry: reg,
		Webhooks: hooks, DLQ: op, Hub: push.New(push.Config{Logger: logger, Registry: reg}), Console: con,
	}))
	e = &env{t: t, pool: pool, h: h}
	e.exec(`INSERT INTO merchants (id, name) VALUES (1, 'Pleo'), (2, 'Apple'), (4593, 'Amazon')`)
	return e, errorLogs
}

// errorCounter passes every record on and counts those at ERROR.
type errorCounter struct {
	slog.Handler
	n *atomic.Int64
}

func (h errorCounter) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError {
		h.n.Add(1)
	}
	return h.Handler.Handle(ctx, r)
}

func (h errorCounter) WithAttrs(as []slog.Attr) slog.Handler {
	return errorCounter{h.Handler.WithAttrs(as), h.n}
}

func (h errorCounter) WithGroup(name string) slog.Handler {
	return errorCounter{h.Handler.WithGroup(name), h.n}
}

// dbFingerprint is every table's row count and the wallets' money: a
// refused request must leave all of it as it was. admin_audit is left out:
// a refused admin request is recorded there on purpose (audit.go,
// TestAdminActionsAudited).
func dbFingerprint(t *testing.T, e *env) string {
	t.Helper()
	ctx := context.Background()
	rows, _ := e.pool.Query(ctx, `SELECT quote_ident(table_name) FROM information_schema.tables
		WHERE table_schema = 'public' AND table_type = 'BASE TABLE' AND table_name <> 'admin_audit'
		ORDER BY table_name`)
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, tbl := range tables {
		var n int64
		if err := e.pool.QueryRow(ctx, `SELECT count(*) FROM `+tbl).Scan(&n); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s=%d ", tbl, n)
	}
	var bal, held int64
	if err := e.pool.QueryRow(ctx, `SELECT coalesce(sum(balance),0), coalesce(sum(held),0) FROM wallets`).Scan(&bal, &held); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(&b, "balance=%d held=%d", bal, held)
	return b.String()
}

// TestHostileInput sends hostile requests to every route: oversized,
// truncated, wrong types, unicode tricks, duplicate JSON keys, numbers past
// int64, negative and zero limits, path traversal in ids, header injection.
// Each gets the expected 4xx problem+json with a detail (the console: its
// error page), the gateway logs no error, and the database (every table's
// rows, the wallets' money) is unchanged after each.
func TestHostileInput(t *testing.T) {
	t.Parallel()
	e, errorLogs := newHostileEnv(t)
	e.wallet(5, 1000)
	e.wallet(6, 1000)
	tok, admin := token(t, 5, false), token(t, 1, true)
	// User 5's webhook endpoint and user 6's, which user 5 must not reach.
	endpoint := func(user int64) string {
		ep, err := webhook.NewStore(e.pool).Create(context.Background(), webhook.Spec{
			URL: "https://93.184.215.14/hook", UserID: &user, Enabled: true, CreatedBy: "test"})
		if err != nil {
			t.Fatal(err)
		}
		return "/v1/webhooks/endpoints/" + ep.ID.String()
	}
	own, theirs := endpoint(5), endpoint(6)
	key := func(k string) map[string]string { return map[string]string{"Idempotency-Key": k} }
	body := func(fields string) string { return "{" + fields + "}" }
	ok := `"user_id":5,"merchant_id":4593,"amount":-1`
	big := body(ok + `,"pad":"` + strings.Repeat("a", 70<<10) + `"`)
	deep := strings.Repeat("[", 20_000) + strings.Repeat("]", 20_000)

	type tc struct {
		name, method, path, body string
		token                    string // default tok; "-" for none
		header                   map[string]string
		status                   int
		// unsized sends the body without a Content-Length, as a chunked
		// upload does: only the reader's own cap stops it.
		unsized bool
		// detail, when set, is a part of the problem's detail (the page's
		// text on the console).
		detail string
		// contentType is the answer's; problem+json when empty.
		contentType string
	}
	says := func(c tc, detail string) tc { c.detail = detail; return c }
	// An unknown webhook endpoint id, well formed.
	unknownEndpoint := "/v1/webhooks/endpoints/0195f2d4-8c1e-7b4a-9c3e-000000000000"
	hook := func(method, path, b string, status int) tc {
		name := strings.NewReplacer(own, "/v1/webhooks/endpoints/{own}", theirs, "/v1/webhooks/endpoints/{theirs}",
			unknownEndpoint, "/v1/webhooks/endpoints/{unknown}").Replace(method + " " + path)
		return tc{name: name, method: method, path: path, body: b, status: status}
	}
	hookBody := func(method, path, what, b string, status int) tc {
		c := hook(method, path, b, status)
		c.name += ": " + what
		return c
	}
	urlBody := func(u string) string { return `{"url":"` + u + `"}` }
	lastID := func(id string, status int) tc {
		return tc{name: "GET /v1/users/5/events: Last-Event-ID " + id, method: "GET", path: "/v1/users/5/events",
			header: map[string]string{"Last-Event-ID": id}, status: status}
	}
	adm := func(method, path string, status int) tc {
		return tc{name: "admin: " + method + " " + path, method: method, path: path, token: admin, status: status}
	}
	// The console: signed in as an admin by its session cookie, forms
	// posted as its pages post them; it answers with its HTML error page.
	const page = "text/html; charset=utf-8"
	con := func(method, path, form string, status int) tc {
		h := map[string]string{"Cookie": console.CookieName + "=" + admin}
		if method == "POST" {
			h["Content-Type"] = "application/x-www-form-urlencoded"
		}
		name := strings.NewReplacer(tok, "{a user's token}", admin, "{an admin token}").Replace(method + " " + path + " " + form)
		return tc{name: "console: " + strings.TrimSpace(name), method: method, path: path, body: form,
			token: "-", header: h, status: status, contentType: page}
	}
	signedOut := func(c tc) tc { delete(c.header, "Cookie"); c.name += " (signed out)"; return c }
	letter := "topic=payments.outcomes.dlq&partition=0&offset=0"
	pay := func(name, b string, status int) tc {
		return tc{name: "POST /v1/payments: " + name, method: "POST", path: "/v1/payments", body: b, header: key("h-" + name), status: status}
	}
	legacy := func(name, b string, status int) tc {
		return tc{name: "POST /payment: " + name, method: "POST", path: "/payment", body: b, status: status}
	}
	get := func(path string, status int) tc {
		return tc{name: "GET " + path, method: "GET", path: path, status: status}
	}
	cases := []tc{
		// Bodies of the payment routes.
		pay("oversized", big, 413),
		pay("truncated", `{"user_id":5,"merchant_id":4593,"amo`, 400),
		pay("truncated string", `{"user_id":5,"merchant_id":4593,"amount":-1,"x":"`, 400),
		{name: "POST /v1/payments: empty", method: "POST", path: "/v1/payments",
			header: map[string]string{"Idempotency-Key": "h-empty", "Content-Type": "application/json"}, status: 400},
		pay("user_id a string", body(`"user_id":"5","merchant_id":4593,"amount":-1`), 400),
		pay("amount a bool", body(`"user_id":5,"merchant_id":4593,"amount":true`), 400),
		pay("amount an object", body(`"user_id":5,"merchant_id":4593,"amount":{"value":-1}`), 400),
		pay("amount null", body(`"user_id":5,"merchant_id":4593,"amount":null`), 400),
		pay("amount negative zero", body(`"user_id":5,"merchant_id":4593,"amount":-0`), 400),
		pay("duplicate key, same value", body(ok+`,"amount":-1`), 400),
		pay("duplicate key, another user", body(`"user_id":6,`+ok), 400),
		pay("duplicate key by escape", body(ok+`,"user_\u0069d":5`), 400),
		pay("user_id past int64", body(`"user_id":9223372036854775808,"merchant_id":4593,"amount":-1`), 400),
		pay("amount past int64", body(`"user_id":5,"merchant_id":4593,"amount":-9223372036854775809`), 400),
		pay("amount 1e400", body(`"user_id":5,"merchant_id":4593,"amount":1e400`), 400),
		pay("homoglyph field (Cyrillic і)", body(`"user_іd":5,"merchant_id":4593,"amount":-1`), 400),
		pay("fullwidth digits", body(`"user_id":５,"merchant_id":4593,"amount":-1`), 400),
		pay("byte order mark", "\ufeff"+body(ok), 400),
		pay("NUL byte", body(ok)+"\x00", 400),
		pay("invalid UTF-8 in a key", body(`"user_id\xff":5,"merchant_id":4593,"amount":-1`), 400),
		pay("trailing garbage", body(ok)+"garbage", 400),
		pay("two objects", body(ok)+body(ok), 400),
		pay("nested 20,000 deep", deep, 400),
		pay("array", `[`+body(ok)+`]`, 400),
		pay("another user's payment", body(`"user_id":6,"merchant_id":4593,"amount":-1`), 403),
		pay("unknown merchant", body(`"user_id":5,"merchant_id":999999,"amount":-1`), 422),
		pay("more than the balance", body(`"user_id":5,"merchant_id":4593,"amount":-1001`), 422),
		{name: "POST /v1/payments: text/plain", method: "POST", path: "/v1/payments", body: body(ok),
			header: map[string]string{"Idempotency-Key": "h-ct", "Content-Type": "text/plain"}, status: 415},
		{name: "POST /v1/payments: UTF-16 charset", method: "POST", path: "/v1/payments", body: body(ok),
			header: map[string]string{"Idempotency-Key": "h-ct16", "Content-Type": "application/json; charset=utf-16"}, status: 415},
		// Idempotency keys and header injection.
		{name: "Idempotency-Key too long", method: "POST", path: "/v1/payments", body: body(ok), header: key(strings.Repeat("k", 256)), status: 400},
		{name: "Idempotency-Key CR LF injection", method: "POST", path: "/v1/payments", body: body(ok), header: key("a\r\nX-Admin: true"), status: 400},
		{name: "Idempotency-Key control byte", method: "POST", path: "/v1/payments", body: body(ok), header: key("a\x01b"), status: 400},
		{name: "Idempotency-Key unicode", method: "POST", path: "/v1/payments", body: body(ok), header: key("clé"), status: 400},
		{name: "Idempotency-Key blank", method: "POST", path: "/v1/payments", body: body(ok), header: key("   "), status: 400},
		{name: "Idempotency-Key missing", method: "POST", path: "/v1/payments", body: body(ok), status: 400},
		{name: "Authorization CR LF injection", method: "POST", path: "/v1/payments", body: body(ok), token: "-",
			header: map[string]string{"Idempotency-Key": "h-auth", "Authorization": "Bearer x\r\nX-User: 1"}, status: 401},
		{name: "Authorization oversized token", method: "GET", path: "/v1/users/5/feed", token: strings.Repeat("a", 10_000), status: 401},
		{name: "no token", method: "POST", path: "/v1/payments", body: body(ok), token: "-", header: key("h-none"), status: 401},
		// The as-is payment route.
		legacy("oversized", big, 413),
		legacy("truncated", `{"user_id":5,`, 400),
		legacy("amount a string", body(`"user_id":5,"merchant_id":4593,"amount":"-1"`), 400),
		legacy("duplicate key", body(ok+`,"merchant_id":4593`), 400),
		legacy("past int64", body(`"user_id":5,"merchant_id":18446744073709551616,"amount":-1`), 400),
		// Feed, balance and payments: limits, cursors, ids.
		get("/v1/users/5/feed?limit=0", 400),
		get("/v1/users/5/feed?limit=-1", 400),
		get("/v1/users/5/feed?limit=abc", 400),
		get("/v1/users/5/feed?limit=9223372036854775808", 400),
		get("/v1/users/5/feed?limit=1e2", 400),
		get("/v1/users/5/feed?limit=%EF%BC%95", 400), // fullwidth 5
		get("/v1/users/5/feed?cursor=garbage!", 400),
		get("/v1/users/5/feed?cursor=ZTE6MDQy", 400),      // non-canonical "e1:042"
		get("/v1/users/5/feed?cursor=ZTE6LTE", 400),       // "e1:-1"
		get("/v1/users/..%2F..%2Fetc%2Fpasswd/feed", 404), // decoded, it is no route
		get("/v1/users/9223372036854775808/feed", 400),
		get("/v1/users/-5/feed", 400),
		get("/v1/users/0/feed", 400),
		get("/v1/users/5%00/feed", 400),
		get("/v1/users/6/feed", 403),
		get("/v1/users/..%2F5/balance", 404),
		get("/v1/users/5%2F..%2F6/balance", 404),
		get("/v1/users/6/balance", 403),
		get("/payment_feed", 400),
		get("/payment_feed?user_id=-1", 400),
		get("/payment_feed?user_id=99999999999999999999", 400),
		get("/payment_feed?user_id=5%27%20OR%201=1", 400),
		get("/v1/payments/..%2F..%2Fadmin", 404),
		get("/v1/payments/..", 400),
		get("/v1/payments/-1", 400),
		get("/v1/payments/0", 400),
		get("/v1/payments/9223372036854775808", 400),
		get("/v1/payments/0195f2d4-8c1e-7b4a-9c3e-zzzzzzzzzzzz", 400),
		get("/v1/payments/1?wait=-1s", 400),
		get("/v1/payments/1?wait=forever", 400),
		get("/v1/payments/1?wait=9999999999h", 400),
		get("/v1/payments/123456", 404),
		// Admin routes: a user token, and bad input with an admin token.
		get("/v1/admin/dlq", 403),
		{name: "POST /v1/admin/dlq/replay as a user", method: "POST", path: "/v1/admin/dlq/replay", body: `{}`, status: 403},
		{name: "GET /v1/admin/dlq/ traversal as a user", method: "GET", path: "/v1/admin/dlq/..%2F..%2Fetc/0/0", status: 404},
		{name: "GET /v1/admin/dlq/{topic} as a user", method: "GET", path: "/v1/admin/dlq/payments.requested.dlq/0/0", status: 403},
		// Routing.
		get("/v1/../v1/users/5/feed", 404),
		{name: "DELETE /v1/payments", method: "DELETE", path: "/v1/payments", status: 405},
		{name: "admin: traversal in the DLQ path", method: "GET", path: "/v1/admin/dlq/..%2F..%2F/0/0", token: admin, status: 404},

		// The event stream: ids and the resume point.
		get("/v1/users/abc/events", 400),
		get("/v1/users/0/events", 400),
		get("/v1/users/9223372036854775808/events", 400),
		get("/v1/users/..%2F6/events", 404),
		get("/v1/users/6/events", 403),
		get("/v1/users/5/events?last_event_id=-1", 400),
		get("/v1/users/5/events?last_event_id=%EF%BC%91", 400), // fullwidth 1
		lastID("abc", 400),
		lastID("-1", 400),
		lastID("1e3", 400),
		lastID("9223372036854775808", 400),
		says(lastID("1", 400), "latest event is 0"), // beyond the user's latest
		lastID("1\r\nX-Admin: true", 400),

		// Webhook endpoints: bodies.
		hookBody("POST", "/v1/webhooks/endpoints", "oversized", `{"url":"https://93.184.215.14/`+strings.Repeat("a", 70<<10)+`"}`, 413),
		func() tc {
			c := hookBody("POST", "/v1/webhooks/endpoints", "oversized, no Content-Length", `{"url":"https://93.184.215.14/`+strings.Repeat("a", 70<<10)+`"}`, 413)
			c.unsized = true
			return c
		}(),
		hookBody("POST", "/v1/webhooks/endpoints", "truncated", `{"url":"https://93.184.215.14/h`, 400),
		hookBody("POST", "/v1/webhooks/endpoints", "an array", `[`+urlBody("https://93.184.215.14/h")+`]`, 400),
		says(hookBody("POST", "/v1/webhooks/endpoints", "duplicate key", `{"url":"https://93.184.215.14/a","url":"https://10.0.0.1/b"}`, 400), "appears twice"),
		says(hookBody("POST", "/v1/webhooks/endpoints", "unknown field", `{"url":"https://93.184.215.14/a","secret":"mine"}`, 400), "unknown field"),
		says(hookBody("POST", "/v1/webhooks/endpoints", "url a number", `{"url":42}`, 400), "url must be a string"),
		says(hookBody("POST", "/v1/webhooks/endpoints", "event_types a string", `{"url":"https://93.184.215.14/a","event_types":"payment.failed"}`, 400), "event_types must be an array"),
		says(hookBody("POST", "/v1/webhooks/endpoints", "enabled a string", `{"url":"https://93.184.215.14/a","enabled":"false"}`, 400), "enabled must be true or false"),
		hookBody("POST", "/v1/webhooks/endpoints", "user_id past int64", `{"url":"https://93.184.215.14/a","user_id":9223372036854775808}`, 400),
		hookBody("POST", "/v1/webhooks/endpoints", "another user's events", `{"url":"https://93.184.215.14/a","user_id":6}`, 403),
		hookBody("POST", "/v1/webhooks/endpoints", "javascript: url", urlBody("javascript:alert(1)"), 422),
		hookBody("POST", "/v1/webhooks/endpoints", "credentials in the url", urlBody("https://user:pass@93.184.215.14/"), 422),
		hookBody("POST", "/v1/webhooks/endpoints", "IPv4-mapped loopback", urlBody("https://[::ffff:127.0.0.1]/"), 422),
		hookBody("POST", "/v1/webhooks/endpoints", "private IPv6", urlBody("https://[fd00::1]/"), 422),
		hookBody("POST", "/v1/webhooks/endpoints", "CR LF in the url", urlBody(`https://93.184.215.14/\r\nHost: evil`), 422),
		hookBody("POST", "/v1/webhooks/endpoints", "url past 2048 bytes", urlBody("https://93.184.215.14/"+strings.Repeat("a", 2048)), 422),
		hookBody("POST", "/v1/webhooks/endpoints", "homoglyph event type", `{"url":"https://93.184.215.14/a","event_types":["payment.succeedеd"]}`, 422), // Cyrillic е
		says(hookBody("POST", "/v1/webhooks/endpoints", "NUL in the description", `{"url":"https://93.184.215.14/a","description":"a\u0000b"}`, 422), "NUL"),
		{name: "POST /v1/webhooks/endpoints: text/plain", method: "POST", path: "/v1/webhooks/endpoints", body: urlBody("https://93.184.215.14/a"),
			header: map[string]string{"Content-Type": "text/plain"}, status: 415},
		{name: "POST /v1/webhooks/endpoints: X-Request-Id CR LF injection", method: "POST", path: "/v1/webhooks/endpoints",
			body: urlBody("https://10.0.0.1/a"), header: map[string]string{"X-Request-Id": "a\r\nX-Admin: true"}, status: 422},
		hookBody("PATCH", own, "duplicate key", `{"url":"https://93.184.215.14/a","url":"https://10.0.0.1/b"}`, 400),
		hookBody("PATCH", own, "unknown field", `{"secret":"mine"}`, 400),
		hookBody("PATCH", own, "enabled a number", `{"enabled":1}`, 400),
		hookBody("PATCH", own, "truncated", `{"description":`, 400),
		hookBody("PATCH", own, "oversized", `{"description":"`+strings.Repeat("d", 70<<10)+`"}`, 413),
		hookBody("PATCH", own, "user_id changed", `{"user_id":6}`, 422),
		hookBody("PATCH", own, "cloud metadata url", urlBody("https://169.254.169.254/latest/meta-data"), 422),
		says(hookBody("PATCH", own, "NUL in the description", `{"description":"\u0000"}`, 422), "NUL"),
		hookBody("PATCH", theirs, "another user's endpoint", `{"enabled":false}`, 404),
		hookBody("PATCH", "/v1/webhooks/endpoints/not-a-uuid", "not a uuid", `{"enabled":false}`, 404),

		// Webhook endpoints: ids, query parameters, other users' endpoints.
		hook("GET", "/v1/webhooks/endpoints?user_id=6", "", 403),
		hook("GET", "/v1/webhooks/endpoints?user_id=-1", "", 400),
		hook("GET", "/v1/webhooks/endpoints?user_id=9223372036854775808", "", 400),
		hook("GET", theirs, "", 404),
		hook("GET", unknownEndpoint, "", 404),
		hook("GET", "/v1/webhooks/endpoints/..%2F..%2Fadmin", "", 404),
		hook("GET", "/v1/webhooks/endpoints/%00", "", 404),
		hook("DELETE", theirs, "", 404),
		hook("DELETE", "/v1/webhooks/endpoints/%FF", "", 404),
		hook("POST", own+"/rotate-secret?overlap=-1h", "", 400),
		hook("POST", own+"/rotate-secret?overlap=169h", "", 400),
		hook("POST", own+"/rotate-secret?overlap=1e3", "", 400),
		hook("POST", own+"/rotate-secret?overlap=9999999999h", "", 400),
		hook("POST", theirs+"/rotate-secret", "", 404),
		hook("POST", "/v1/webhooks/endpoints/%00/rotate-secret", "", 404),
		hook("GET", own+"/attempts?limit=0", "", 400),
		hook("GET", own+"/attempts?limit=-1", "", 400),
		hook("GET", own+"/attempts?limit=1001", "", 400),
		hook("GET", own+"/attempts?since=yesterday", "", 400),
		hook("GET", own+"/attempts?until=2026-13-01T00:00:00Z", "", 400),
		hook("GET", own+"/attempts?event_id=%00", "", 400),
		hook("GET", theirs+"/attempts", "", 404),
		hook("POST", own+"/messages/%00/resend", "", 400),
		hook("POST", own+"/messages/%FF/resend", "", 400),
		hook("POST", own+"/messages/..%2F..%2Fx/resend", "", 404),
		hook("POST", own+"/messages/1:succeeded/resend", "", 404), // no such message
		hook("POST", theirs+"/messages/1:succeeded/resend", "", 404),
		hook("POST", own+"/recover", "", 400),
		hook("POST", own+"/recover?since=yesterday", "", 400),
		hook("POST", own+"/recover?since=2026-01-01T00:00:00%2B25:00", "", 400),
		hook("POST", theirs+"/recover?since=2026-01-01T00:00:00Z", "", 404),

		// The DLQ admin with an admin token: filters, addresses, replays.
		adm("GET", "/v1/admin/dlq?limit=-1", 400),
		adm("GET", "/v1/admin/dlq?user_id=9223372036854775808", 400),
		adm("GET", "/v1/admin/dlq?topic=..%2F..%2Fetc", 400),
		adm("GET", "/v1/admin/dlq/payments.outcomes.dlq/2147483648/0", 400),
		adm("GET", "/v1/admin/dlq/payments.outcomes.dlq/0/9223372036854775808", 400),
		adm("GET", "/v1/admin/dlq/%00/0/0", 404),
		adm("POST", "/v1/admin/dlq/replay", 400),
		adm("POST", "/v1/admin/dlq/replay?topic=payments.outcomes&rate=NaN", 400),
		adm("POST", "/v1/admin/dlq/replay?topic=payments.outcomes&topic=payments.requested", 400),
		adm("POST", "/v1/admin/dlq/replay?topic=payments.outcomes&all_topics=true", 400),
		adm("POST", "/v1/admin/dlq/replay?topic=payments.outcomes&dry_run=true&error=%00", 400),
		adm("GET", "/v1/admin/dlq?topic=payments.outcomes&error=%FF", 400),
		func() tc {
			c := adm("POST", "/v1/admin/dlq/replay", 400) // the filter is in the query, never the body
			c.name, c.body = c.name+" with a JSON filter", `{"topic":"payments.outcomes","dry_run":true}`
			return c
		}(),

		// The console: query parameters, addresses, forms, sign-in.
		con("GET", "/console/dlq?limit=-1", "", 400),
		con("GET", "/console/dlq?topic=..%2F..%2Fetc", "", 400),
		con("GET", "/console/dlq/payments.outcomes.dlq/x/0", "", 400),
		con("GET", "/console/dlq/%00/0/0", "", 400),
		con("GET", "/console/unknown?user_id=-1", "", 400),
		con("GET", "/console/unknown?user_id=1&evil=1", "", 400),
		con("GET", "/console/webhooks?endpoint=..%2F..%2F", "", 400),
		con("GET", "/console/webhooks?limit=0", "", 400),
		con("POST", "/console/dlq/replay", "topic=payments.outcomes&rate=NaN", 400),
		con("POST", "/console/dlq/replay", letter+"&rate=1e400", 400),
		con("POST", "/console/dlq/replay", "topic=..%2F..%2Fetc", 400),
		con("POST", "/console/dlq/replay", letter+"&force=true", 400),
		con("POST", "/console/dlq/replay", letter+"&offset=1", 400),
		con("POST", "/console/dlq/replay", "topic=payments.outcomes&error=%00", 400),
		con("POST", "/console/dlq/replay", "topic=payments.outcomes&error=%FF", 400),
		con("POST", "/console/unknown/abc/resolve", "", 400),
		con("POST", "/console/unknown/-1/resolve", "", 400),
		con("POST", "/console/unknown/9223372036854775808/resolve", "", 400),
		func() tc {
			c := con("POST", "/console/dlq/replay", letter, 403)
			c.name, c.header["Sec-Fetch-Site"] = c.name+" cross-site", "cross-site"
			return c
		}(),
		func() tc {
			c := con("POST", "/console/dlq/replay", letter+"&pad="+strings.Repeat("a", 70<<10), 413)
			c.name = "console: POST /console/dlq/replay oversized"
			return c
		}(),
		func() tc {
			c := con("GET", "/console", "", 403)
			c.name, c.header["Cookie"] = c.name+" a user's token", console.CookieName+"="+tok
			return c
		}(),
		signedOut(con("GET", "/console/dlq", "", 401)),
		signedOut(con("POST", "/console/logout", "", 401)),
		signedOut(con("POST", "/console/login", "token=", 400)),
		signedOut(con("POST", "/console/login", "token=garbage", 401)),
		signedOut(con("POST", "/console/login", "token="+tok, 403)),
		signedOut(con("POST", "/console/login", "token="+url.QueryEscape(admin+"\r\nSet-Cookie: a=b"), 401)),
		func() tc {
			c := signedOut(con("GET", "/console/static/..%2F..%2Fconsole.go", "", 404))
			c.contentType = "text/plain; charset=utf-8" // http.FileServer's
			return c
		}(),
	}
	if len(cases) < 60 {
		t.Fatalf("%d cases, want at least 60", len(cases))
	}
	before := dbFingerprint(t, e)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tokenHeader := tok
			switch c.token {
			case "-":
				tokenHeader = ""
			case "":
			default:
				tokenHeader = c.token
			}
			hr := httptest.NewRequest(c.method, "/", strings.NewReader(c.body))
			u, err := url.ParseRequestURI(c.path) // as sent: dot segments kept
			if err != nil {
				t.Fatal(err)
			}
			hr.URL, hr.RequestURI = u, c.path
			if c.unsized {
				hr.ContentLength = -1
			}
			if c.body != "" {
				hr.Header.Set("Content-Type", "application/json")
			}
			if tokenHeader != "" {
				hr.Header.Set("Authorization", "Bearer "+tokenHeader)
			}
			for k, v := range c.header {
				hr.Header[http.CanonicalHeaderKey(k)] = []string{v} // as sent, unvalidated
			}
			errorsBefore := errorLogs.Load()
			w := httptest.NewRecorder()
			e.h.ServeHTTP(w, hr)
			if w.Code != c.status || w.Code < 400 || w.Code > 499 {
				t.Errorf("status %d, want %d; body %s", w.Code, c.status, w.Body)
			}
			wantCT := c.contentType
			if wantCT == "" {
				wantCT = problem.ContentType
			}
			if ct := w.Header().Get("Content-Type"); ct != wantCT {
				t.Errorf("Content-Type %q, want %q; body %s", ct, wantCT, w.Body)
			}
			if wantCT == problem.ContentType {
				var p problem.Details
				if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil || p.Status != w.Code || p.Detail == "" || p.Title == "" {
					t.Errorf("problem %+v (%v): want its status, a title and a detail", p, err)
				}
				if !strings.Contains(p.Detail, c.detail) {
					t.Errorf("detail %q, want it to say %q", p.Detail, c.detail)
				}
			} else if !strings.Contains(w.Body.String(), c.detail) {
				t.Errorf("the answer does not say %q:\n%s", c.detail, w.Body)
			}
			if n := errorLogs.Load() - errorsBefore; n != 0 {
				t.Errorf("the gateway logged %d errors", n)
			}
			for k, vs := range w.Header() {
				for _, v := range vs {
					if strings.ContainsAny(v, "\r\n") || strings.EqualFold(k, "X-Admin") || strings.EqualFold(k, "X-User") {
						t.Errorf("response header %s: %q", k, v)
					}
				}
			}
			if after := dbFingerprint(t, e); after != before {
				t.Errorf("the database changed:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
}
