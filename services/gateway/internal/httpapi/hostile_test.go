package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/finsvc/finance/pkg/problem"
)

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
// Each gets the expected 4xx problem+json with a detail, and the database
// (every table's rows, the wallets' money) is unchanged after each.
func TestHostileInput(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.wallet(5, 1000)
	e.wallet(6, 1000)
	tok, admin := token(t, 5, false), token(t, 1, true)
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
	}
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
			if c.body != "" {
				hr.Header.Set("Content-Type", "application/json")
			}
			if tokenHeader != "" {
				hr.Header.Set("Authorization", "Bearer "+tokenHeader)
			}
			for k, v := range c.header {
				hr.Header[http.CanonicalHeaderKey(k)] = []string{v} // as sent, unvalidated
			}
			w := httptest.NewRecorder()
			e.h.ServeHTTP(w, hr)
			if w.Code != c.status || w.Code < 400 || w.Code > 499 {
				t.Errorf("status %d, want %d; body %s", w.Code, c.status, w.Body)
			}
			if ct := w.Header().Get("Content-Type"); ct != problem.ContentType {
				t.Errorf("Content-Type %q, want %q", ct, problem.ContentType)
			}
			var p problem.Details
			if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil || p.Status != w.Code || p.Detail == "" {
				t.Errorf("problem %+v (%v): want its status and a detail", p, err)
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
