package verify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"testing"
)

// statementAnswer is a processor that answers every request with one
// status and body, and keeps the address it was asked.
type statementAnswer struct {
	code int
	body []byte
	got  *string
}

func (a statementAnswer) RoundTrip(r *http.Request) (*http.Response, error) {
	*a.got = r.URL.String()
	return &http.Response{StatusCode: a.code, Header: http.Header{}, Body: io.NopCloser(bytes.NewReader(a.body)), Request: r}, nil
}

// FuzzStatement: any status and body of the processor's statement, read
// whole (Executions) or from a sequence number on (ExecutionsAfter, the
// reconciler's incremental read: after >= 0), is read without a panic:
// one error, last, and nothing else on anything but a 200; on a 200, a
// statement accepted without an error is one complete JSON object whose
// "executions" arrays hold exactly the executions yielded, each of which
// reads back as itself. The incremental read asks for after_seq=after,
// and AppendStatement's copy (copySource) takes only executions numbered
// above after, each above the one before, and stops at the first that is
// not with errOutOfOrder.
func FuzzStatement(f *testing.F) {
	const ok = `{"count":2,"executions":[` +
		`{"seq":1,"id":"sim-1","idempotency_key":"payment-0195f2d4-8c1e-7b4a-9c3e-1a2b3c4d5e6f","user_id":3456,"amount":-3000,` +
		`"reference":"7","api":"proposed","executed_at":"2026-05-04T10:00:00.5Z","answered_at":"2026-05-04T10:00:00.6Z"},` +
		`{"seq":2,"id":"sim-2","idempotency_key":"","user_id":1,"amount":1,"reference":"","api":"as-is","executed_at":"2026-05-04T10:00:01+02:00"}]}`
	f.Add(200, []byte(ok), int64(-1))
	f.Add(200, []byte(ok), int64(0))
	f.Add(200, []byte(ok), int64(1))
	f.Add(200, []byte(`{"count":0,"executions":[]}`), int64(5))
	f.Add(200, []byte(`{"executions":[{"seq":3},{"seq":2},{"seq":3}]}`), int64(1))
	f.Add(200, []byte(`{"executions":[{"seq":1}],"executions":[{"seq":2}]}`), int64(-1))
	f.Add(200, []byte(`{"Executions":[{"seq":1}]}`), int64(-1))
	f.Add(200, []byte(`{"executions":null}`), int64(-1))
	f.Add(200, []byte(`{"executions":[null,{"SEQ":1,"user_id":1.5}]}`), int64(-1))
	f.Add(200, []byte(`{"executions":[{"seq":1,"executed_at":"yesterday"}]}`), int64(-1))
	f.Add(200, []byte(`{"executions":[{"seq":1}]} trailing`), int64(-1))
	f.Add(200, []byte(`{"executions":[{"seq":1}]`), int64(-1))
	f.Add(200, []byte(`{"executions":[{"seq":1},`), int64(-1))
	f.Add(200, []byte(`[]`), int64(-1))
	f.Add(200, []byte(``), int64(0))
	f.Add(404, []byte(`404 page not found`), int64(0))
	f.Add(500, []byte(ok), int64(-1))
	f.Fuzz(func(t *testing.T, code int, body []byte, after int64) {
		if code < 100 || code > 999 {
			return // not an HTTP status line
		}
		var asked string
		s := &HTTPStatement{URL: "http://processor.test/sim/executions",
			Client: &http.Client{Transport: statementAnswer{code, body, &asked}}}
		read := s.Executions(context.Background())
		if after >= 0 {
			read = s.ExecutionsAfter(context.Background(), after)
		}
		var execs []Execution
		var errs []error
		for e, err := range read {
			if len(errs) > 0 {
				t.Fatalf("yielded %+v, %v after the error %v", e, err, errs[0])
			}
			if err != nil {
				errs = append(errs, err)
				continue
			}
			execs = append(execs, e)
		}
		u, err := url.Parse(asked)
		if err != nil {
			t.Fatal(err)
		}
		if q := u.Query(); after >= 0 && (len(q["after_seq"]) != 1 || q.Get("after_seq") != strconv.FormatInt(after, 10)) ||
			after < 0 && u.RawQuery != "" || u.Path != "/sim/executions" {
			t.Fatalf("asked %s", asked)
		}
		if code != http.StatusOK {
			if len(errs) != 1 || len(execs) != 0 {
				t.Fatalf("HTTP %d: %d executions, errors %v", code, len(execs), errs)
			}
			return
		}
		if len(errs) > 0 {
			return // refused
		}
		if !json.Valid(body) {
			t.Fatalf("accepted a statement that is not one JSON value: %q", body)
		}
		want, err := executionsOf(body)
		if err != nil {
			t.Fatalf("accepted %q, which does not decode whole: %v", body, err)
		}
		got, _ := json.Marshal(execs)
		if w, _ := json.Marshal(want); !bytes.Equal(got, w) {
			t.Fatalf("%q yielded\n%s\nwant\n%s", body, got, w)
		}
		// Each execution reads back as itself.
		for _, e := range execs {
			b, err := json.Marshal(e)
			if err != nil {
				t.Fatalf("%+v does not encode: %v", e, err)
			}
			var again Execution
			if err := json.Unmarshal(b, &again); err != nil {
				t.Fatal(err)
			}
			if b2, _ := json.Marshal(again); !bytes.Equal(b, b2) {
				t.Fatalf("%s reads back as %s", b, b2)
			}
		}
		if after <= 0 {
			return
		}
		// The incremental read's copy.
		i := 0
		src := &copySource{after: after, next: func() (Execution, error, bool) {
			if i == len(execs) {
				return Execution{}, nil, false
			}
			i++
			return execs[i-1], nil, true
		}}
		last := after
		n := 0
		for src.Next() {
			if _, err := src.Values(); err != nil {
				t.Fatal(err)
			}
			if src.cur.Seq <= last {
				t.Fatalf("copied execution %d after %d", src.cur.Seq, last)
			}
			last = src.cur.Seq
			n++
		}
		switch err := src.Err(); {
		case err == nil && n != len(execs):
			t.Fatalf("copied %d of %d executions without an error", n, len(execs))
		case err != nil && (!errors.Is(err, errOutOfOrder) || execs[n].Seq > last):
			t.Fatalf("copy stopped at execution %d (%+v) after %d: %v", n, execs[n], last, err)
		}
	})
}

// executionsOf decodes a statement whole: the executions of each
// "executions" member of its top-level object, in order (a key spelled
// otherwise is another member).
func executionsOf(body []byte) ([]Execution, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, errors.New("not an object")
	}
	var out []Execution
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		if tok != "executions" {
			continue
		}
		var es []Execution
		if err := json.Unmarshal(v, &es); err != nil {
			return nil, err
		}
		out = append(out, es...)
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return nil, errors.New("the object does not end")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the object")
	}
	return out, nil
}
