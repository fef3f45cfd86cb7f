package webhook_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/finsvc/finance/pkg/ledger"
	"github.com/finsvc/finance/pkg/payment"
	"github.com/finsvc/finance/pkg/webhook"
)

// specSign is the Standard Webhooks v1 signature written from the
// specification, independently of the package: the secret is the base64
// after "whsec_", the signed content "<id>.<timestamp>.<body>", the value
// "v1," and the base64 of its HMAC-SHA256.
func specSign(t *testing.T, secret, id string, ts int64, body []byte) string {
	t.Helper()
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		t.Fatal(err)
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id + "." + strconv.FormatInt(ts, 10) + "." + string(body)))
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// The specification's published example: our signer must give exactly its
// signature, and so must the independent implementation above.
func TestSignMatchesTheSpecificationsExample(t *testing.T) {
	t.Parallel()
	const (
		secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
		id     = "msg_p5jXN8AQM9LWM0D4loKWxJek"
		want   = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
	)
	body := []byte(`{"test": 2432232314}`)
	s, err := webhook.ParseSecret(secret)
	if err != nil {
		t.Fatal(err)
	}
	if got := webhook.Sign(id, time.Unix(1614265330, 0), body, s); got != want {
		t.Errorf("Sign = %q, want %q", got, want)
	}
	if got := specSign(t, secret, id, 1614265330, body); got != want {
		t.Errorf("the test's own implementation = %q, want %q", got, want)
	}
}

// Headers made for generated secrets, one and two (a rotation), check out
// with the independent implementation: every signature it expects is there.
func TestSetHeadersAgreeWithTheSpecification(t *testing.T) {
	t.Parallel()
	newer, older := webhook.NewSecret(), webhook.NewSecret()
	if newer.Reveal() == older.Reveal() || !strings.HasPrefix(newer.Reveal(), "whsec_") {
		t.Fatalf("generated secrets %q %q", newer.Reveal(), older.Reveal())
	}
	body := []byte(`{"id":"1:succeeded"}`)
	at := time.Unix(1_800_000_000, 0)
	for _, secrets := range [][]webhook.Secret{{newer}, {newer, older}} {
		h := http.Header{}
		webhook.SetHeaders(h, "1:succeeded", at, body, secrets...)
		if h.Get("webhook-id") != "1:succeeded" || h.Get("webhook-timestamp") != "1800000000" {
			t.Errorf("headers %v", h)
		}
		got := strings.Split(h.Get("webhook-signature"), " ")
		var want []string
		for _, s := range secrets {
			want = append(want, specSign(t, s.Reveal(), "1:succeeded", 1_800_000_000, body))
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("signatures (-want +got):\n%s", diff)
		}
	}
}

func TestVerifier(t *testing.T) {
	t.Parallel()
	cur, prev, other := webhook.NewSecret(), webhook.NewSecret(), webhook.NewSecret()
	now := time.Unix(1_800_000_000, 0)
	body := []byte(`{"a":1}`)
	signed := func(at time.Time, b []byte, s ...webhook.Secret) http.Header {
		h := http.Header{}
		webhook.SetHeaders(h, "m1", at, b, s...)
		return h
	}
	tests := []struct {
		name    string
		secrets []string
		h       http.Header
		body    []byte
		want    error
	}{
		{"signed by the secret", []string{cur.Reveal()}, signed(now, body, cur), body, nil},
		{"rotation: new and previous sent, receiver has the old", []string{prev.Reveal()}, signed(now, body, cur, prev), body, nil},
		{"receiver has both", []string{cur.Reveal(), prev.Reveal()}, signed(now, body, prev), body, nil},
		{"within the tolerance", []string{cur.Reveal()}, signed(now.Add(-4*time.Minute), body, cur), body, nil},
		{"another secret", []string{cur.Reveal()}, signed(now, body, other), body, webhook.ErrSignature},
		{"tampered body", []string{cur.Reveal()}, signed(now, body, cur), []byte(`{"a":2}`), webhook.ErrSignature},
		{"too old", []string{cur.Reveal()}, signed(now.Add(-6*time.Minute), body, cur), body, webhook.ErrTimestamp},
		{"from the future", []string{cur.Reveal()}, signed(now.Add(6*time.Minute), body, cur), body, webhook.ErrTimestamp},
		{"no headers", []string{cur.Reveal()}, http.Header{}, body, webhook.ErrMissingHeader},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v, err := webhook.NewVerifier(tt.secrets...)
			if err != nil {
				t.Fatal(err)
			}
			v.Now = func() time.Time { return now }
			if err := v.Verify(tt.h, tt.body); !errors.Is(err, tt.want) {
				t.Errorf("Verify = %v, want %v", err, tt.want)
			}
		})
	}
	// A changed id is a changed signature.
	v, _ := webhook.NewVerifier(cur.Reveal())
	v.Now = func() time.Time { return now }
	h := signed(now, body, cur)
	h.Set("webhook-id", "m2")
	if err := v.Verify(h, body); !errors.Is(err, webhook.ErrSignature) {
		t.Errorf("changed id: %v", err)
	}
}

func TestSecretNeverPrints(t *testing.T) {
	t.Parallel()
	s := webhook.NewSecret()
	for _, got := range []string{s.String(), s.LogValue().String()} {
		if strings.Contains(got, strings.TrimPrefix(s.Reveal(), "whsec_")) {
			t.Errorf("secret shows: %q", got)
		}
	}
	if _, err := webhook.ParseSecret("whsec_!!"); err == nil {
		t.Error("ParseSecret(bad base64): no error")
	}
}

func TestTypeOf(t *testing.T) {
	t.Parallel()
	tests := []struct {
		status payment.Status
		reason string
		want   webhook.Type
		ok     bool
	}{
		{payment.StatusAccepted, "", webhook.TypeAccepted, true},
		{payment.StatusProcessing, "", "", false},
		{payment.StatusSucceeded, "", webhook.TypeSucceeded, true},
		{payment.StatusFailed, "declined: insufficient funds", webhook.TypeFailed, true},
		{payment.StatusUnknown, "timeout", webhook.TypeUnknown, true},
		{payment.StatusSucceeded, "reconciled: the processor reports payment-x succeeded as e1", webhook.TypeResolved, true},
		{payment.StatusFailed, "reconciled: declined by processor: no", webhook.TypeResolved, true},
		{payment.StatusSucceeded, "recovered: the processor executed ...", webhook.TypeResolved, true},
	}
	for _, tt := range tests {
		got, ok := webhook.TypeOf(ledger.Event{Status: tt.status, Reason: tt.reason})
		if got != tt.want || ok != tt.ok {
			t.Errorf("TypeOf(%s, %q) = %q, %v; want %q, %v", tt.status, tt.reason, got, ok, tt.want, tt.ok)
		}
	}
	for _, typ := range webhook.Types() {
		if got, err := webhook.ParseType(string(typ)); err != nil || got != typ {
			t.Errorf("ParseType(%s) = %q, %v", typ, got, err)
		}
	}
	if _, err := webhook.ParseType("payment.processing"); err == nil {
		t.Error("ParseType(payment.processing): no error")
	}
}

// The payload's data is the payment as GET /v1/payments/{id} shows it
// (payment.View) plus user_seq, at the change.
func TestPayload(t *testing.T) {
	t.Parallel()
	uid := uuid.MustParse("0190a4d8-5e1a-7c3b-9f00-000000000001")
	at := time.Date(2026, 12, 6, 1, 2, 3, 456789000, time.UTC)
	ev := ledger.Event{PaymentID: 100001, PaymentUID: uid, UserID: 3456, MerchantID: 4593, Amount: -500,
		Status: payment.StatusFailed, Reason: "declined", UserSeq: 7, OccurredAt: at}
	body, err := webhook.NewPayload(webhook.TypeFailed, ev, webhook.Stored{IdempotencyKey: "k1", CreatedAt: at.Add(-time.Second)}).Encode()
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"id": "100001:failed", "type": "payment.failed", "created_at": "2026-12-06T01:02:03.456789Z",
		"data": map[string]any{
			"id": 100001.0, "uid": uid.String(), "status": "failed", "user_id": 3456.0, "merchant_id": 4593.0,
			"amount": -500.0, "idempotency_key": "k1", "failure_reason": "declined",
			"created_at": "2026-12-06T01:02:02.456789Z", "updated_at": "2026-12-06T01:02:03.456789Z",
			"status_url": "/v1/payments/" + uid.String(), "user_seq": 7.0,
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("payload (-want +got):\n%s", diff)
	}
}

func TestPolicyCheckURL(t *testing.T) {
	t.Parallel()
	strict := webhook.Policy{}
	dev := webhook.Policy{AllowHTTP: true, Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
	tests := []struct {
		name   string
		p      webhook.Policy
		url    string
		refuse string // a part of the error; "" = accepted
	}{
		{"public https", strict, "https://93.184.215.14/hook", ""},
		{"http outside dev", strict, "http://93.184.215.14/hook", "must be https"},
		{"loopback", strict, "https://127.0.0.1/hook", "private"},
		{"loopback v6", strict, "https://[::1]/hook", "private"},
		{"v4-mapped loopback", strict, "https://[::ffff:127.0.0.1]/hook", "private"},
		{"private 10/8", strict, "https://10.1.2.3/hook", "private"},
		{"private 192.168", strict, "https://192.168.1.1/hook", "private"},
		{"link-local metadata", strict, "https://169.254.169.254/latest", "private"},
		{"unspecified", strict, "https://0.0.0.0/hook", "private"},
		{"cgnat", strict, "https://100.64.0.1/hook", "private"},
		{"ula v6", strict, "https://[fd00::1]/hook", "private"},
		{"localhost name", strict, "https://localhost/hook", "private"},
		{"credentials", strict, "https://u:p@93.184.215.14/", "credentials"},
		{"ftp", strict, "ftp://93.184.215.14/", "scheme"},
		{"relative", strict, "/hook", "scheme"},
		{"too long", strict, "https://93.184.215.14/" + strings.Repeat("a", 2100), "characters"},
		{"allowlisted loopback in dev", dev, "http://127.0.0.1:9999/hook", ""},
		{"not allowlisted in dev", dev, "http://10.0.0.1/hook", "private"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := tt.p.CheckURL(context.Background(), tt.url)
			switch {
			case tt.refuse == "" && err != nil:
				t.Errorf("CheckURL(%s) = %v, want accepted", tt.url, err)
			case tt.refuse != "" && (err == nil || !strings.Contains(err.Error(), tt.refuse)):
				t.Errorf("CheckURL(%s) = %v, want an error about %q", tt.url, err, tt.refuse)
			}
		})
	}
}

// At connect time: the client of a policy without an allowlist never
// reaches a loopback receiver (what a name rebound to 127.0.0.1 would
// reach), and follows no redirect.
func TestPolicyClientRefusesAtConnectAndFollowsNoRedirect(t *testing.T) {
	t.Parallel()
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Redirect(w, r, "/elsewhere", http.StatusFound)
	}))
	t.Cleanup(srv.Close)

	_, err := webhook.Policy{}.Client(5*time.Second, 2).Post(srv.URL, "application/json", nil)
	if !errors.Is(err, webhook.ErrRefusedAddress) {
		t.Errorf("strict client: err = %v, want ErrRefusedAddress", err)
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("the receiver was reached %d times", n)
	}

	allow := webhook.Policy{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
	resp, err := allow.Client(5*time.Second, 2).Post(srv.URL, "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound || hits.Load() != 1 {
		t.Errorf("status %d after %d hits, want the 302 itself after 1", resp.StatusCode, hits.Load())
	}
}

func TestParseAllowlist(t *testing.T) {
	t.Parallel()
	got, err := webhook.ParseAllowlist("127.0.0.0/8, ::1 ,10.1.2.3")
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128"), netip.MustParsePrefix("10.1.2.3/32")}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if _, err := webhook.ParseAllowlist("nope"); err == nil {
		t.Error("no error")
	}
}
