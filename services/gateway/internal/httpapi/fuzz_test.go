package httpapi

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/finsvc/finance/pkg/payment"
	"github.com/finsvc/finance/pkg/problem"
	"github.com/finsvc/finance/services/gateway/internal/store"
)

// The fuzz targets of the gateway's decoders of outside input: payment
// requests (Idempotency-Key and body), cursors, and the query parameters
// limit, wait and the payment id of the path. Each asserts the property,
// not just "no panic": a refusal is an *apiError of status 4xx, answered
// as 4xx problem+json through the API's own error path; an acceptance
// round-trips. Seed corpora: testdata/fuzz/FuzzXxx. Run one with
// go test -run '^$' -fuzz '^FuzzPaymentRequest$' -fuzztime 1m .

// fuzzEngine serves the decoders on test routes through a.handle, the
// error path of every real route.
func fuzzEngine(tb testing.TB) *gin.Engine {
	tb.Helper()
	gin.SetMode(gin.ReleaseMode)
	a := &api{logger: slog.New(slog.DiscardHandler), waitMax: time.Minute}
	e := gin.New()
	e.POST("/payment/:required", a.handle(func(c *gin.Context) error {
		np, err := readPaymentRequest(c, c.Param("required") == "1")
		if err != nil {
			return err
		}
		writeJSON(c, http.StatusOK, np)
		return nil
	}))
	e.GET("/query/:id", a.handle(func(c *gin.Context) error {
		out := map[string]any{}
		limit, err := parseLimit(c)
		if err != nil {
			return err
		}
		out["limit"] = limit
		if raw, ok := c.GetQuery("cursor"); ok {
			if out["cursor"], err = decodeCursor(raw); err != nil {
				return err
			}
		}
		if raw, ok := c.GetQuery("wait"); ok {
			wait, _, err := parseWait(raw, a.waitMax)
			if err != nil {
				return err
			}
			out["wait"] = wait
		}
		id := c.Param("id")
		if strings.Contains(id, "-") {
			uid, err := payment.ParseUID(id)
			if err != nil {
				return invalid("payment id: " + err.Error())
			}
			out["uid"] = uid.String()
		} else if out["id"], err = parseID(id, "payment id"); err != nil {
			return err
		}
		writeJSON(c, http.StatusOK, out)
		return nil
	}))
	return e
}

// wantClientProblem fails unless w is a 4xx problem+json with a detail.
func wantClientProblem(t *testing.T, w *httptest.ResponseRecorder) {
	t.Helper()
	if w.Code < 400 || w.Code > 499 {
		t.Fatalf("status %d, want 4xx; body %s", w.Code, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); ct != problem.ContentType {
		t.Fatalf("Content-Type %q, want %q", ct, problem.ContentType)
	}
	var p problem.Details
	if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil || p.Status != w.Code || p.Detail == "" || p.Type == "" {
		t.Fatalf("problem %+v (%v): want status %d, a type and a detail", p, err, w.Code)
	}
}

// serveRouted serves r on e and reports whether the answer is a 200 to
// check further. A path gin has no route for (its plain 404) is not a
// request of the route under test, and is skipped; any other answer must be
// a 4xx problem+json.
func serveRouted(t *testing.T, e http.Handler, r *http.Request) (*httptest.ResponseRecorder, bool) {
	t.Helper()
	w := httptest.NewRecorder()
	e.ServeHTTP(w, r)
	switch {
	case w.Code == http.StatusNotFound && !strings.HasPrefix(w.Header().Get("Content-Type"), problem.ContentType):
		return w, false // gin found no route for this path
	case w.Code != http.StatusOK:
		wantClientProblem(t, w)
		return w, false
	}
	return w, true
}

func FuzzPaymentRequest(f *testing.F) {
	f.Add(`{"user_id":3456,"merchant_id":4593,"amount":-3000}`, "application/json", "key-1", true)
	f.Add(`{"user_id":1,"merchant_id":1,"amount":1}`, "application/json; charset=utf-8", "", false)
	f.Add(`{"user_id":1,"merchant_id":1,"amount":1,"user_id":2}`, "application/json", "k", true)
	f.Add(`{"user_id":9223372036854775808,"merchant_id":1,"amount":1}`, "application/json", "k", true)
	f.Add(`{"user_id":1.5,"merchant_id":1,"amount":"1"}`, "application/json", "k", true)
	f.Add(`{"user_id":1,"merchant_id":1,"amount":0}`, "text/plain", "k", true)
	f.Add(`{"user_id":1,"merchant_id":1,"amount":1} {}`, "application/json", "k", true)
	f.Add(`{"user_id":1,"merchant_id":1,"amount":1e3}`, "application/json", "k", true)
	f.Add(`{"user_\u0069d":1,"merchant_id":1,"amount":1}`, "application/json", "k\u00e9", true)
	f.Add(`[`, "application/json", " ", false)
	f.Add(`null`, "application/json", "k", true)
	e := fuzzEngine(f)
	f.Fuzz(func(t *testing.T, body, contentType, key string, required bool) {
		target := "/payment/0"
		if required {
			target = "/payment/1"
		}
		r := httptest.NewRequest(http.MethodPost, target, strings.NewReader(body))
		r.Header.Set("Content-Type", contentType)
		if key != "" {
			r.Header["Idempotency-Key"] = []string{key} // as sent: no canonical trimming by net/http
		}
		w := httptest.NewRecorder()
		e.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			wantClientProblem(t, w)
			return
		}
		var np store.NewPayment
		if err := json.Unmarshal(w.Body.Bytes(), &np); err != nil {
			t.Fatal(err)
		}
		if np.UserID <= 0 || np.MerchantID <= 0 || payment.ValidateAmount(np.Amount) != nil {
			t.Fatalf("accepted an invalid payment %+v from %q", np, body)
		}
		if k := np.IdempotencyKey; k == "" || len(k) > maxIdempotencyKeyLen || strings.TrimSpace(k) != k {
			t.Fatalf("accepted Idempotency-Key %q", k)
		}
		if key != "" && np.IdempotencyKey != strings.TrimSpace(key) {
			t.Fatalf("key %q became %q", key, np.IdempotencyKey)
		}
		// Round trip: the accepted payment, sent again as a canonical body
		// with its key, decodes to itself.
		again := httptest.NewRequest(http.MethodPost, "/payment/1", strings.NewReader(
			`{"user_id":`+strconv.FormatInt(np.UserID, 10)+`,"merchant_id":`+strconv.FormatInt(np.MerchantID, 10)+
				`,"amount":`+strconv.FormatInt(np.Amount, 10)+`}`))
		again.Header.Set("Content-Type", "application/json")
		again.Header.Set("Idempotency-Key", np.IdempotencyKey)
		w2 := httptest.NewRecorder()
		e.ServeHTTP(w2, again)
		var np2 store.NewPayment
		if err := json.Unmarshal(w2.Body.Bytes(), &np2); w2.Code != http.StatusOK || err != nil || np2 != np {
			t.Fatalf("round trip of %+v: %d %s", np, w2.Code, w2.Body)
		}
	})
}

func FuzzQueryParams(f *testing.F) {
	f.Add("limit=20", "1")
	f.Add("limit=0&wait=30s", "12")
	f.Add("limit=-1", "1")
	f.Add("limit=99999999999999999999", "1")
	f.Add("wait=-1s", "1")
	f.Add("wait=1h", "1")
	f.Add("wait=9223372036854775807ns", "1")
	f.Add("cursor="+encodeCursor(42), "0195f2d4-8c1e-7b4a-9c3e-1a2b3c4d5e6f")
	f.Add("cursor=ZTE6LTE", "..%2F..%2Fetc%2Fpasswd")
	f.Add("limit=1&limit=2", "9223372036854775808")
	f.Add("limit=%00", "%E2%80%AE1")
	e := fuzzEngine(f)
	f.Fuzz(func(t *testing.T, query, id string) {
		u := &url.URL{Path: "/query/" + id, RawQuery: query}
		if id == "" || strings.ContainsAny(id, "/?#") || query != "" && strings.ContainsAny(query, "# ") {
			return // not one request of this route
		}
		r, err := http.NewRequest(http.MethodGet, u.String(), nil)
		if err != nil {
			return
		}
		w := httptest.NewRecorder()
		e.ServeHTTP(w, r)
		switch w.Code {
		case http.StatusNotFound:
			return // gin found no route for this path
		case http.StatusOK:
		default:
			wantClientProblem(t, w)
			return
		}
		var out struct {
			Limit  int           `json:"limit"`
			Cursor *int64        `json:"cursor"`
			Wait   time.Duration `json:"wait"`
			ID     int64         `json:"id"`
			UID    string        `json:"uid"`
		}
		if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
			t.Fatal(err)
		}
		if out.Limit < 1 || out.Limit > maxFeedLimit || out.Wait < 0 || out.Wait > time.Minute {
			t.Fatalf("accepted %+v from %q", out, query)
		}
		if out.Cursor != nil && (*out.Cursor <= 0 || r.URL.Query().Get("cursor") != encodeCursor(*out.Cursor)) {
			t.Fatalf("cursor %q accepted as %d, which encodes as %q", r.URL.Query().Get("cursor"), *out.Cursor, encodeCursor(*out.Cursor))
		}
		if out.UID == "" && out.ID <= 0 {
			t.Fatalf("id %q accepted as %d", id, out.ID)
		}
	})
}

// FuzzCursor: a cursor decodes only if it is one encodeCursor made, and
// every refusal is a 400.
func FuzzCursor(f *testing.F) {
	for _, id := range []int64{1, 42, 1 << 62} {
		f.Add(encodeCursor(id))
	}
	f.Add("ZTE6MDQy") // "e1:042"
	f.Add("ZTE6KzQy") // "e1:+42"
	f.Add("ZTE6NDI=") // padded
	f.Add("ZTE6NDJ")  // trailing bits set
	f.Add("ZTI6NDI")  // "e2:42"
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		id, err := decodeCursor(s)
		if err != nil {
			var ae *apiError
			if !errors.As(err, &ae) || ae.status != http.StatusBadRequest {
				t.Fatalf("decodeCursor(%q) = %v, want a 400 apiError", s, err)
			}
			return
		}
		if id <= 0 || encodeCursor(id) != s {
			t.Fatalf("decodeCursor(%q) = %d, which encodes as %q: two cursors for one page", s, id, encodeCursor(id))
		}
	})
}

// FuzzDuplicateKey: for any JSON object, its canonical re-encoding (which
// cannot repeat a key) has no duplicate, and the same with one of its keys
// sent again, at the top or nested one level down, has exactly that one.
func FuzzDuplicateKey(f *testing.F) {
	for _, s := range []string{`{"a":1,"a":2}`, `{"a":{"b":1,"b":2}}`, `{"a":[1,{"c":1}],"b":"a"}`,
		`{"user_id":5,"user_\u0069d":6}`, `{"a":"a","b":{"a":"a"}}`, `{}`, `{"x":[[],{}]}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var m map[string]any
		if json.Unmarshal([]byte(s), &m) != nil || m == nil {
			return
		}
		canon, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if k, dup := duplicateKey(canon); dup {
			t.Fatalf("duplicate %q reported in %s", k, canon)
		}
		for k := range m {
			kj, _ := json.Marshal(k)
			again := append(append([]byte{}, canon[:len(canon)-1]...), ","+string(kj)+":null}"...)
			if got, dup := duplicateKey(again); !dup || got != k {
				t.Fatalf("duplicateKey(%s) = %q, %v; want %q", again, got, dup, k)
			}
			nested := []byte(`{"outer":` + string(again) + `}`)
			if got, dup := duplicateKey(nested); !dup || got != k {
				t.Fatalf("duplicateKey(%s) = %q, %v; want %q", nested, got, dup, k)
			}
			break
		}
	})
}
