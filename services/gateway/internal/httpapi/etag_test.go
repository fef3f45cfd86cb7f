package httpapi_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// conditional is one GET with an optional If-None-Match.
func (e *env) conditional(path, tok, inm string) *httptest.ResponseRecorder {
	e.t.Helper()
	r := req{method: http.MethodGet, path: path, token: tok}
	if inm != "" {
		r.header = map[string]string{"If-None-Match": inm}
	}
	return e.do(r)
}

func wantFull(t *testing.T, what string, w *httptest.ResponseRecorder) string {
	t.Helper()
	tag := w.Header().Get("ETag")
	if w.Code != http.StatusOK || tag == "" || w.Body.Len() == 0 {
		t.Fatalf("%s: status %d, ETag %q, %d bytes; want 200 with an ETag and a body", what, w.Code, tag, w.Body.Len())
	}
	if len(tag) < 3 || tag[0] != '"' || tag[len(tag)-1] != '"' {
		t.Errorf("%s: ETag %q is not a strong entity tag", what, tag)
	}
	if cc := w.Header().Get("Cache-Control"); cc != "private, no-cache" {
		t.Errorf("%s: Cache-Control %q, want private, no-cache", what, cc)
	}
	return tag
}

func wantNotModified(t *testing.T, what string, w *httptest.ResponseRecorder, tag string) {
	t.Helper()
	if w.Code != http.StatusNotModified || w.Header().Get("ETag") != tag || w.Body.Len() != 0 {
		t.Errorf("%s: status %d, ETag %q, body %q; want 304, ETag %s, no body", what, w.Code, w.Header().Get("ETag"), w.Body.String(), tag)
	}
}

// malformed If-None-Match values: each is a non-match, never an error.
var malformedINM = []string{`garbage`, `"unterminated`, `W/`, `""`, `W/"f", x"`, "\"f1.1.1.1\u00e9\""}

func TestFeedETag(t *testing.T) {
	t.Parallel()
	for _, route := range []struct{ name, path, other, limited string }{
		{"v1", "/v1/users/42/feed", "/v1/users/43/feed", "/v1/users/42/feed?limit=1"},
		{"as-is", "/payment_feed?user_id=42", "/payment_feed?user_id=43", "/payment_feed?user_id=42&limit=1"},
	} {
		t.Run(route.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			e.wallet(42, 10_000)
			e.wallet(43, 10_000)
			e.entry(42, 1000, 1, 10_000, time.Unix(1700000000, 0))
			e.entry(43, 2000, 1, 10_000, time.Unix(1700000000, 0))
			tok, admin := token(t, 42, false), token(t, 1, true)

			tag := wantFull(t, "first read", e.conditional(route.path, tok, ""))
			wantNotModified(t, "same If-None-Match", e.conditional(route.path, tok, tag), tag)
			wantNotModified(t, "weak form", e.conditional(route.path, tok, "W/"+tag), tag)
			wantNotModified(t, "in a list", e.conditional(route.path, tok, `"other", `+tag), tag)
			wantNotModified(t, "star", e.conditional(route.path, tok, "*"), tag)
			for _, bad := range malformedINM {
				if got := wantFull(t, "malformed "+bad, e.conditional(route.path, tok, bad)); got != tag {
					t.Errorf("malformed %q: ETag %s, want %s", bad, got, tag)
				}
			}
			// Another page of the same feed is another answer.
			if got := wantFull(t, "limit=1", e.conditional(route.limited, tok, tag)); got == tag {
				t.Errorf("limit=1 has the ETag of the default page, %s", got)
			}

			// A payment (its hold changes the available balance) makes a
			// new answer with a new ETag.
			if w := e.pay(tok, "etag-1", 42, 2, -500); w.Code != http.StatusAccepted {
				t.Fatalf("pay: %d %s", w.Code, w.Body.String())
			}
			newTag := wantFull(t, "after a payment", e.conditional(route.path, tok, tag))
			if newTag == tag {
				t.Fatalf("ETag %s unchanged after a payment", tag)
			}
			wantNotModified(t, "new ETag", e.conditional(route.path, tok, newTag), newTag)

			// Another user's feed is 403 even with its current ETag.
			otherTag := wantFull(t, "admin reads 43", e.conditional(route.other, admin, ""))
			for _, inm := range []string{otherTag, "*"} {
				if w := e.conditional(route.other, tok, inm); w.Code != http.StatusForbidden || w.Header().Get("ETag") != "" {
					t.Errorf("user 42 reads 43's feed with If-None-Match %s: status %d, ETag %q; want 403 and no ETag",
						inm, w.Code, w.Header().Get("ETag"))
				}
			}
			// An unknown user is 404, not 304.
			if w := e.conditional("/v1/users/44/feed", admin, "*"); w.Code != http.StatusNotFound {
				t.Errorf("unknown user with If-None-Match *: status %d, want 404", w.Code)
			}
		})
	}
}

func TestPaymentETag(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.wallet(42, 10_000)
	e.wallet(43, 10_000)
	tok := token(t, 42, false)
	w := e.pay(tok, "etag-p", 42, 2, -500)
	if w.Code != http.StatusAccepted {
		t.Fatalf("pay: %d %s", w.Code, w.Body.String())
	}
	p := decodeBody[paymentResp](t, w)
	path := "/v1/payments/" + p.UID

	tag := wantFull(t, "first read", e.conditional(path, tok, ""))
	wantNotModified(t, "same If-None-Match", e.conditional(path, tok, tag), tag)
	wantNotModified(t, "star", e.conditional(path, tok, "*"), tag)
	for _, bad := range malformedINM {
		wantFull(t, "malformed "+bad, e.conditional(path, tok, bad))
	}

	// A status change makes a new answer with a new ETag.
	e.exec(`UPDATE payments SET status = 'processing', updated_at = now() WHERE id = $1`, p.ID)
	newTag := wantFull(t, "after a status change", e.conditional(path, tok, tag))
	if newTag == tag {
		t.Fatalf("ETag %s unchanged after a status change", tag)
	}
	wantNotModified(t, "new ETag", e.conditional(path, tok, newTag), newTag)

	// Another user gets 404, as without If-None-Match, never a 304.
	other := token(t, 43, false)
	for _, inm := range []string{newTag, "*", ""} {
		if w := e.conditional(path, other, inm); w.Code != http.StatusNotFound || w.Header().Get("ETag") != "" {
			t.Errorf("user 43 reads 42's payment with If-None-Match %q: status %d, ETag %q; want 404 and no ETag",
				inm, w.Code, w.Header().Get("ETag"))
		}
	}
}
