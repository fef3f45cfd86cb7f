package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/gin-gonic/gin"
	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/finsvc/finance/pkg/auth"
	"github.com/finsvc/finance/pkg/webhook"
)

// The fuzz targets of the webhook endpoints API's decoders: the body of
// POST and PATCH /v1/webhooks/endpoints[/{id}] (endpointSpec) and the path
// and query parameters of the endpoint routes. The real routes load the
// endpoint from PostgreSQL before they decode, and make test's fuzz-short
// runs before it starts PostgreSQL, so fuzzEngine serves the handlers' own
// decoders on test routes instead, through a.handle, the error path of
// every route, under the production URL policy with a resolver that
// answers from /etc/hosts only (no DNS while fuzzing).

// fuzzResolver resolves names from /etc/hosts only: a name it would ask a
// DNS server for does not resolve.
var fuzzResolver = &net.Resolver{PreferGo: true, Dial: func(context.Context, string, string) (net.Conn, error) {
	return nil, errors.New("fuzzing: no DNS")
}}

// The principals and stored endpoints of FuzzWebhookEndpoint's modes:
// create as user 7, create as an admin, patch user 7's endpoint, patch an
// admin's endpoint for every user.
var (
	fuzzUser, fuzzAdmin = auth.Principal{UserID: 7}, auth.Principal{UserID: 1, Admin: true}
	fuzzStoredUserID    = int64(7)
	fuzzStored          = []*webhook.Endpoint{
		2: {URL: "https://93.184.215.14/hook", EventTypes: []string{"payment.succeeded"}, UserID: &fuzzStoredUserID, Description: "shop", Enabled: true},
		3: {URL: "https://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]/all", EventTypes: []string{}, Enabled: false},
	}
)

// webhookFuzzEngine is fuzzEngine with the webhook decoders' test routes.
func webhookFuzzEngine(tb testing.TB) *gin.Engine {
	tb.Helper()
	e := fuzzEngine(tb)
	a := &api{logger: slog.New(slog.DiscardHandler), webhookPolicy: webhook.Policy{Resolver: fuzzResolver}}
	e.POST("/webhook/:mode", a.handle(func(c *gin.Context) error {
		mode, _ := strconv.Atoi(c.Param("mode"))
		p := fuzzUser
		if mode == 1 || mode == 3 {
			p = fuzzAdmin
		}
		var stored *webhook.Endpoint
		if mode >= 2 {
			stored = fuzzStored[mode]
		}
		sp, err := a.endpointSpec(c, p, stored)
		if err != nil {
			return err
		}
		writeJSON(c, http.StatusOK, sp)
		return nil
	}))
	e.GET("/webhook/:id/:event_id/:route", a.handle(func(c *gin.Context) error {
		id, err := endpointID(c.Param("id"))
		if err != nil {
			return err
		}
		out := webhookQuery{ID: id.String(), EventID: c.Param("event_id")}
		if err := checkEventID("event id", out.EventID); err != nil { // resend
			return err
		}
		if out.Overlap, err = parseOverlap(c); err != nil { // rotate-secret
			return err
		}
		if out.Log, err = logFilter(c, id); err != nil { // attempts
			return err
		}
		if c.Param("route") == "recover" {
			if out.Since, err = recoverSince(c); err != nil {
				return err
			}
		}
		if raw, ok := c.GetQuery("user_id"); ok { // the list
			if out.UserID, err = parseID(raw, "user_id"); err != nil {
				return err
			}
		}
		writeJSON(c, http.StatusOK, out)
		return nil
	}))
	return e
}

// webhookQuery is what the query route decoded.
type webhookQuery struct {
	ID      string
	EventID string
	Overlap time.Duration
	Log     webhook.LogFilter
	Since   time.Time
	UserID  int64
}

// storableText reports whether PostgreSQL's text can hold s.
func storableText(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsRune(s, 0)
}

func FuzzWebhookEndpoint(f *testing.F) {
	f.Add(`{"url":"https://93.184.215.14/hook","event_types":["payment.succeeded","payment.failed"],"description":"shop"}`, "application/json", uint8(0))
	f.Add(`{"url":"https://93.184.215.14/hook","user_id":8}`, "application/json", uint8(0))
	f.Add(`{"url":"https://93.184.215.14/hook","user_id":8,"enabled":false}`, "application/json; charset=utf-8", uint8(1))
	f.Add(`{"url":"https://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]:8443/h?x=1","user_id":null}`, "application/json", uint8(1))
	f.Add(`{"enabled":false,"description":"paused"}`, "application/json", uint8(2))
	f.Add(`{"user_id":7}`, "application/json", uint8(2))
	f.Add(`{"user_id":8}`, "application/json", uint8(3))
	f.Add(`{"url":"https://10.0.0.1/hook"}`, "application/json", uint8(0))
	f.Add(`{"url":"https://127.1/"}`, "application/json", uint8(0))
	f.Add(`{"url":"https://[::ffff:169.254.169.254]/"}`, "application/json", uint8(1))
	f.Add(`{"url":"https://localhost/"}`, "application/json", uint8(0))
	f.Add(`{"url":"https://example.com/"}`, "application/json", uint8(0))
	f.Add(`{"url":"http://93.184.215.14/"}`, "application/json", uint8(0))
	f.Add(`{"url":"https://user:pw@93.184.215.14/#f"}`, "application/json", uint8(0))
	f.Add(`{"url":"javascript:alert(1)"}`, "application/json", uint8(0))
	f.Add(`{"url":"https://93.184.215.14/","event_types":["payment.exploded"]}`, "application/json", uint8(0))
	f.Add(`{"url":"https://93.184.215.14/","description":"a\u0000b"}`, "application/json", uint8(0))
	f.Add(`{"url":"https://93.184.215.14/","description":"`+strings.Repeat("d", 513)+`"}`, "application/json", uint8(0))
	f.Add(`{"url":"https://93.184.215.14/","url":"https://10.0.0.1/"}`, "application/json", uint8(0))
	f.Add(`{"url":"https://93.184.215.14/","secret":"mine"}`, "application/json", uint8(0))
	f.Add(`{"url":42,"event_types":"payment.failed","enabled":"false"}`, "application/json", uint8(0))
	f.Add(`{"url":"https://93.184.215.14/","user_id":0}`, "application/json", uint8(1))
	f.Add(`{"url":"https://93.184.215.14/"}`, "text/plain", uint8(0))
	f.Add(`null`, "application/json", uint8(2))
	f.Add(``, "application/json", uint8(3))
	e := webhookFuzzEngine(f)
	post := func(mode uint8, body, contentType string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodPost, "/webhook/"+strconv.Itoa(int(mode)), strings.NewReader(body))
		r.Header.Set("Content-Type", contentType)
		w := httptest.NewRecorder()
		e.ServeHTTP(w, r)
		return w
	}
	f.Fuzz(func(t *testing.T, body, contentType string, mode uint8) {
		mode %= 4
		w := post(mode, body, contentType)
		if w.Code != http.StatusOK {
			wantClientProblem(t, w)
			return
		}
		var sp webhook.Spec
		if err := json.Unmarshal(w.Body.Bytes(), &sp); err != nil {
			t.Fatal(err)
		}
		u, err := url.Parse(sp.URL)
		if err != nil || u.Scheme != "https" || u.User != nil || u.Fragment != "" || len(sp.URL) > webhook.MaxURLLength {
			t.Fatalf("accepted url %q from %q", sp.URL, body)
		}
		addrs := []netip.Addr{}
		if a, err := netip.ParseAddr(u.Hostname()); err == nil {
			addrs = append(addrs, a)
		} else if addrs, err = fuzzResolver.LookupNetIP(context.Background(), "ip", u.Hostname()); err != nil {
			t.Fatalf("accepted url %q, whose host does not resolve: %v", sp.URL, err)
		}
		for _, a := range addrs {
			if a = a.Unmap(); !a.IsValid() || a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsMulticast() ||
				a.IsUnspecified() || netip.MustParsePrefix("100.64.0.0/10").Contains(a) || a.Is4() && a.As4()[0] == 0 {
				t.Fatalf("accepted url %q, which reaches %s", sp.URL, a)
			}
		}
		for _, typ := range sp.EventTypes {
			if _, err := webhook.ParseType(typ); err != nil {
				t.Fatalf("accepted event type %q", typ)
			}
		}
		if len(sp.Description) > webhook.MaxDescription || !storableText(sp.Description) || !storableText(sp.URL) {
			t.Fatalf("accepted description %q, url %q: not storable", sp.Description, sp.URL)
		}
		switch {
		case mode == 0 || mode == 2:
			if sp.UserID == nil || *sp.UserID != 7 {
				t.Fatalf("user 7's endpoint filters user %v", sp.UserID)
			}
		case mode == 3:
			if sp.UserID != nil {
				t.Fatalf("the every-user endpoint became user %d's", *sp.UserID)
			}
		case sp.UserID != nil && *sp.UserID <= 0:
			t.Fatalf("accepted user_id %d", *sp.UserID)
		}
		// Round trip: the spec sent back as a body of its own mode's
		// route (every field, user_id as stored) decodes to itself.
		canon := map[string]any{"url": sp.URL, "event_types": sp.EventTypes, "description": sp.Description, "enabled": sp.Enabled}
		if sp.EventTypes == nil {
			canon["event_types"] = []string{}
		}
		if mode == 1 || mode == 2 {
			canon["user_id"] = sp.UserID
		}
		b, err := json.Marshal(canon)
		if err != nil {
			t.Fatal(err)
		}
		w2 := post(mode, string(b), "application/json")
		var sp2 webhook.Spec
		if err := json.Unmarshal(w2.Body.Bytes(), &sp2); w2.Code != http.StatusOK || err != nil {
			t.Fatalf("round trip of %+v as %s: %d %s", sp, b, w2.Code, w2.Body)
		}
		if sp.EventTypes == nil {
			sp.EventTypes = []string{}
		}
		if diff := cmp.Diff(sp, sp2); diff != "" {
			t.Fatalf("round trip of %s (-first +again):\n%s", b, diff)
		}
	})
}

func FuzzWebhookQuery(f *testing.F) {
	const id = "0195f2d4-8c1e-7b4a-9c3e-1a2b3c4d5e6f"
	f.Add("", id, "5:failed", false)
	f.Add("overlap=1h&event_id=5:failed&since=2026-05-04T10:00:00Z&until=2026-05-05T10:00:00.5%2B02:00&limit=1000&user_id=7", id, "5:failed", false)
	f.Add("since=2026-05-04T10:00:00Z", id, "1234:succeeded", true)
	f.Add("", id, "1:failed", true)
	f.Add("overlap=-1s", id, "1:failed", false)
	f.Add("overlap=169h", id, "1:failed", false)
	f.Add("overlap=9223372036854775807ns&limit=0", id, "1:failed", false)
	f.Add("overlap=&limit=1001&user_id=0", id, "1:failed", false)
	f.Add("since=yesterday&until=2026-13-01T00:00:00Z", id, "1:failed", true)
	f.Add("since=0000-01-01T00:00:00%2B01:00", id, "1:failed", true)
	f.Add("event_id=5:failed%00", id, "5%00", false)
	f.Add("event_id=%FF%FE", "urn:uuid:"+id, "%E2%80%AE", false)
	f.Add("user_id=9223372036854775808", "{"+id+"}", "1:failed", false)
	f.Add("limit=1&limit=2", "not-a-uuid", "..", false)
	e := webhookFuzzEngine(f)
	f.Fuzz(func(t *testing.T, query, id, eventID string, recoverRoute bool) {
		if id == "" || eventID == "" || strings.ContainsAny(id+eventID, "/?#") || query != "" && strings.ContainsAny(query, "# ") {
			return // not one request of this route
		}
		route := "q"
		if recoverRoute {
			route = "recover"
		}
		u := &url.URL{Path: "/webhook/" + id + "/" + eventID + "/" + route, RawQuery: query}
		r, err := http.NewRequest(http.MethodGet, u.String(), nil)
		if err != nil {
			return
		}
		w, ok := serveRouted(t, e, r)
		if !ok {
			return
		}
		var out webhookQuery
		if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
			t.Fatal(err)
		}
		if uid, err := uuid.Parse(id); err != nil || uid.String() != out.ID || out.Log.EndpointID.String() != out.ID {
			t.Fatalf("endpoint id %q accepted as %s", id, out.ID)
		}
		q := r.URL.Query()
		for _, ev := range []string{out.EventID, out.Log.EventID} {
			if !storableText(ev) || strings.ContainsFunc(ev, unicode.IsControl) {
				t.Fatalf("event id %q accepted", ev)
			}
		}
		if _, ok := q["overlap"]; !ok && out.Overlap != DefaultSecretOverlap || out.Overlap < 0 || out.Overlap > maxSecretOverlap {
			t.Fatalf("overlap %v accepted from %q", out.Overlap, query)
		}
		if _, ok := q["limit"]; !ok && out.Log.Limit != 100 || out.Log.Limit < 1 || out.Log.Limit > 1000 {
			t.Fatalf("limit %d accepted from %q", out.Log.Limit, query)
		}
		for name, got := range map[string]time.Time{"since": out.Log.Since, "until": out.Log.Until} {
			if raw := q.Get(name); raw == "" && !got.IsZero() {
				t.Fatalf("%s %v from nothing", name, got)
			} else if want, err := time.Parse(time.RFC3339Nano, raw); raw != "" && (err != nil || !want.Equal(got)) {
				t.Fatalf("%s=%q accepted as %v", name, raw, got)
			}
		}
		if recoverRoute && (out.Since.IsZero() || !out.Since.Equal(out.Log.Since)) {
			t.Fatalf("recover since %v accepted from %q", out.Since, query)
		}
		if _, ok := q["user_id"]; ok && out.UserID <= 0 {
			t.Fatalf("user_id %d accepted from %q", out.UserID, query)
		}
	})
}
