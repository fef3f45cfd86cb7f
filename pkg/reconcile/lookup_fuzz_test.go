package reconcile_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"testing"

	"github.com/finsvc/finance/pkg/reconcile"
)

// lookupAnswer is a processor that answers every request with one status
// and body, and keeps the request it got.
type lookupAnswer struct {
	code int
	body []byte
	got  **http.Request
}

func (a lookupAnswer) RoundTrip(r *http.Request) (*http.Response, error) {
	*a.got = r
	return &http.Response{StatusCode: a.code, Header: http.Header{}, Body: io.NopCloser(bytes.NewReader(a.body)), Request: r}, nil
}

// FuzzHTTPLookup: any status and body of the processor's lookup
// (GET /v2/payments/{key}) is read without a panic, and conservatively:
// found only on a 200 whose body decodes whole as a Resource, for this
// key or none (a status other than succeeded or declined decides nothing:
// reconcile.go); not found only on the documented 404
// {"error":"not_found"}; an undocumented 404 is ErrNoLookupRoute; anything
// else is an error, with nothing found.
func FuzzHTTPLookup(f *testing.F) {
	const key = "payment-0195f2d4-8c1e-7b4a-9c3e-1a2b3c4d5e6f"
	f.Add(200, []byte(`{"id":"p-1","idempotency_key":"`+key+`","user_id":3456,"amount":-3000,"reference":"7","status":"succeeded"}`))
	f.Add(200, []byte(`{"id":"p-1","status":"declined","reason":"insufficient funds"}`))
	f.Add(200, []byte(`{"id":"p-2","idempotency_key":"payment-other","status":"succeeded"}`))
	f.Add(200, []byte(`{"status":"succeeded","status":"declined"}`))
	f.Add(200, []byte(`{"STATUS":"succeeded","Idempotency_Key":"x"}`))
	f.Add(200, []byte(`{"status":"succeeded"} {"status":"declined"}`))
	f.Add(200, []byte(`{"user_id":1e3,"amount":9223372036854775808}`))
	f.Add(200, []byte(`null`))
	f.Add(200, []byte(`[]`))
	f.Add(200, []byte(``))
	f.Add(404, []byte(`{"error":"not_found"}`))
	f.Add(404, []byte(`{"error":"not_found","error":"other"}`))
	f.Add(404, []byte(`404 page not found`))
	f.Add(410, []byte(`{"error":"not_found"}`))
	f.Add(500, []byte(`{"status":"succeeded"}`))
	f.Add(302, []byte{})
	f.Fuzz(func(t *testing.T, code int, body []byte) {
		if code < 100 || code > 999 {
			return // not an HTTP status line
		}
		var req *http.Request
		l := &reconcile.HTTPLookup{BaseURL: "http://processor.test/", Client: &http.Client{Transport: lookupAnswer{code, body, &req}}}
		r, found, err := l.Lookup(context.Background(), key)
		if req == nil || req.Method != http.MethodGet || req.URL.Path != "/v2/payments/"+key {
			t.Fatalf("asked %v", req)
		}
		if err != nil {
			if found || r != (reconcile.Resource{}) {
				t.Fatalf("HTTP %d %q: %+v found=%v with error %v", code, body, r, found, err)
			}
			if code == http.StatusNotFound && !errors.Is(err, reconcile.ErrNoLookupRoute) {
				t.Fatalf("HTTP 404 %q: %v, want ErrNoLookupRoute", body, err)
			}
			return
		}
		if !found {
			var e struct {
				Error string `json:"error"`
			}
			if code != http.StatusNotFound || json.Unmarshal(body, &e) != nil || e.Error != "not_found" {
				t.Fatalf("HTTP %d %q taken as not found", code, body)
			}
			if r != (reconcile.Resource{}) {
				t.Fatalf("not found with %+v", r)
			}
			return
		}
		var want reconcile.Resource
		if code != http.StatusOK || json.Unmarshal(body, &want) != nil || want != r {
			t.Fatalf("HTTP %d %q found as %+v", code, body, r)
		}
		if r.IdempotencyKey != "" && r.IdempotencyKey != key {
			t.Fatalf("the answer for key %q taken as %q's", r.IdempotencyKey, key)
		}
		// What the reconciler acts on round-trips.
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		var again reconcile.Resource
		if err := json.Unmarshal(b, &again); err != nil || again != r {
			t.Fatalf("%+v encodes as %s, which reads as %+v (%v)", r, b, again, err)
		}
	})
}
