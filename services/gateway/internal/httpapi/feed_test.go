package httpapi_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestFeedShape(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.wallet(3456, 2000)
	e.entry(3456, 7844, 1, 5000, time.Unix(1656477038, 0))
	e.entry(3456, 7855, 2, -3000, time.Unix(1656487348, 0))
	// An open debit holds 500: the balance stays, the available balance drops.
	e.exec(`INSERT INTO payments (user_id, merchant_id, amount, status, idempotency_key, request_hash, hold)
		VALUES (3456, 2, -500, 'accepted', 'k', 'h', 500)`)
	e.exec(`UPDATE wallets SET held = 500 WHERE user_id = 3456`)
	tok := token(t, 3456, false)

	const want = `{"user_id":3456,"balance":2000,"available_balance":1500,"transactions":[
		{"id":7855,"name":"Apple","amount":-3000,"timestamp":1656487348},
		{"id":7844,"name":"Pleo","amount":5000,"timestamp":1656477038}]}`
	for _, path := range []string{"/v1/users/3456/feed", "/payment_feed?user_id=3456"} {
		t.Run(path, func(t *testing.T) {
			w := e.do(req{method: http.MethodGet, path: path, token: tok})
			if w.Code != http.StatusOK {
				t.Fatalf("status = %d, body %s", w.Code, w.Body.String())
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
			if diff := cmp.Diff(jsonValue(t, want), jsonValue(t, w.Body.String())); diff != "" {
				t.Errorf("feed (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFeedEmpty(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.wallet(7, 0)
	w := e.do(req{method: http.MethodGet, path: "/v1/users/7/feed", token: token(t, 7, false)})
	want := `{"user_id":7,"balance":0,"available_balance":0,"transactions":[]}`
	if diff := cmp.Diff(jsonValue(t, want), jsonValue(t, w.Body.String())); diff != "" {
		t.Errorf("feed (-want +got):\n%s", diff)
	}
}

func TestFeedPagination(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.wallet(42, 0)
	e.wallet(43, 0)
	base := time.Unix(1700000000, 0)
	var all []int64 // payment ids, newest entry first
	for i := range int64(7) {
		e.entry(42, 1000+i, 1, 100+i, base.Add(time.Duration(i)*time.Minute))
		e.entry(43, 2000+i, 1, 1, base) // another user's entries interleave
		all = append([]int64{1000 + i}, all...)
	}
	tok := token(t, 42, false)

	type page struct {
		Transactions []struct {
			ID int64 `json:"id"`
		} `json:"transactions"`
		NextCursor string `json:"next_cursor"`
	}
	var got []int64
	cursor, pages := "", 0
	for {
		path := "/v1/users/42/feed?limit=3"
		if cursor != "" {
			path += "&cursor=" + url.QueryEscape(cursor)
		}
		w := e.do(req{method: http.MethodGet, path: path, token: tok})
		if w.Code != http.StatusOK {
			t.Fatalf("GET %s: status %d, body %s", path, w.Code, w.Body.String())
		}
		p := decodeBody[page](t, w)
		pages++
		for _, tr := range p.Transactions {
			got = append(got, tr.ID)
		}
		if pages == 1 {
			// A payment settling between pages goes to the top and does not
			// shift the pages after the cursor.
			e.entry(42, 1100, 1, 5, base.Add(time.Hour))
		}
		if p.NextCursor == "" {
			if len(p.Transactions) == 0 {
				t.Errorf("page %d is empty; the previous page should not have had a cursor", pages)
			}
			break
		}
		if len(p.Transactions) != 3 {
			t.Errorf("page %d has %d transactions and a cursor, want 3", pages, len(p.Transactions))
		}
		cursor = p.NextCursor
		if pages > 10 {
			t.Fatal("pagination does not end")
		}
	}
	if diff := cmp.Diff(all, got); diff != "" {
		t.Errorf("payment ids over all pages (-want +got):\n%s", diff)
	}
	if pages != 3 {
		t.Errorf("pages = %d, want 3", pages)
	}

	// The default page is 50 and the whole feed here.
	w := e.do(req{method: http.MethodGet, path: "/v1/users/42/feed", token: tok})
	if p := decodeBody[page](t, w); len(p.Transactions) != 8 || p.NextCursor != "" {
		t.Errorf("default page: %d transactions, cursor %q; want 8 and none", len(p.Transactions), p.NextCursor)
	}
}

func TestFeedErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.wallet(42, 0)
	tok := token(t, 42, false)
	admin := token(t, 1, true)
	for _, tc := range []struct {
		name, path, token string
		status            int
		typ               string
	}{
		{"limit zero", "/v1/users/42/feed?limit=0", tok, 400, "invalid-request"},
		{"limit over max", "/v1/users/42/feed?limit=201", tok, 400, "invalid-request"},
		{"limit not a number", "/v1/users/42/feed?limit=ten", tok, 400, "invalid-request"},
		{"limit empty", "/v1/users/42/feed?limit=", tok, 400, "invalid-request"},
		{"cursor garbage", "/v1/users/42/feed?cursor=%25%25", tok, 400, "invalid-request"},
		{"cursor forged", "/v1/users/42/feed?cursor=" + "MTIz", tok, 400, "invalid-request"}, // base64("123")
		{"cursor negative", "/v1/users/42/feed?cursor=ZTE6LTU", tok, 400, "invalid-request"}, // base64("e1:-5")
		{"user id not a number", "/v1/users/abc/feed", admin, 400, "invalid-request"},
		{"user id zero", "/v1/users/0/feed", admin, 400, "invalid-request"},
		{"unknown user", "/v1/users/999/feed", admin, 404, "not-found"},
		{"other user", "/v1/users/43/feed", tok, 403, "forbidden"},
		{"legacy without user_id", "/payment_feed", tok, 400, "invalid-request"},
		{"legacy bad user_id", "/payment_feed?user_id=x", tok, 400, "invalid-request"},
		{"legacy other user", "/payment_feed?user_id=43", tok, 403, "forbidden"},
		{"legacy unknown user", "/payment_feed?user_id=999", admin, 404, "not-found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := e.do(req{method: http.MethodGet, path: tc.path, token: tc.token})
			wantProblem(t, w, tc.status, tc.typ)
		})
	}
	// A cursor this API made is accepted on any page size.
	w := e.do(req{method: http.MethodGet, path: "/v1/users/42/feed?limit=200&cursor=ZTE6NQ", token: tok}) // "e1:5"
	if w.Code != http.StatusOK {
		t.Errorf("valid cursor: status %d, body %s", w.Code, w.Body.String())
	}
}

func jsonValue(t testing.TB, s string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("bad JSON %q: %v", s, err)
	}
	return v
}
