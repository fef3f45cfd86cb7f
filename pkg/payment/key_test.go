package payment

import (
	"testing"

	"github.com/google/uuid"
)

func TestProcessorKeyRoundTrip(t *testing.T) {
	uid := NewUID()
	if uid.Version() != 7 {
		t.Fatalf("NewUID version = %d, want 7", uid.Version())
	}
	key := ProcessorKey(uid)
	if want := "payment-" + uid.String(); key != want {
		t.Fatalf("ProcessorKey = %q, want %q", key, want)
	}
	got, ok := ParseProcessorKey(key)
	if !ok || got != uid {
		t.Fatalf("ParseProcessorKey(%q) = %v, %v; want %v, true", key, got, ok, uid)
	}
}

func TestNewUIDNeverRepeats(t *testing.T) {
	seen := make(map[uuid.UUID]bool, 10000)
	for range 10000 {
		uid := NewUID()
		if seen[uid] {
			t.Fatalf("NewUID repeated %v", uid)
		}
		seen[uid] = true
	}
}

func TestParseProcessorKey(t *testing.T) {
	t.Parallel()
	const canonical = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
	for _, tc := range []struct {
		name, key string
		want      uuid.UUID // uuid.Nil: refused
	}{
		{"valid", "payment-" + canonical, uuid.MustParse(canonical)},
		{"empty", "", uuid.Nil},
		{"prefix only", "payment-", uuid.Nil},
		{"wrong prefix", "demo-" + canonical, uuid.Nil},
		{"prefix in another case", "Payment-" + canonical, uuid.Nil},
		{"no prefix", canonical, uuid.Nil},
		{"numeric legacy key", "payment-100001", uuid.Nil},
		{"bad uuid: not hex", "payment-0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5g", uuid.Nil},
		{"bad uuid: one character short", "payment-0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5", uuid.Nil},
		{"bad uuid: no dashes", "payment-0190a1b2c3d47e5f8a9b0c1d2e3f4a5b", uuid.Nil},
		{"nil uuid", "payment-00000000-0000-0000-0000-000000000000", uuid.Nil},
		{"upper case uuid", "payment-0190A1B2-C3D4-7E5F-8A9B-0C1D2E3F4A5B", uuid.Nil},
		{"braced uuid", "payment-{" + canonical + "}", uuid.Nil},
		{"urn uuid", "payment-urn:uuid:" + canonical, uuid.Nil},
		{"extra chars after", "payment-" + canonical + "x", uuid.Nil},
		{"extra chars before", " payment-" + canonical, uuid.Nil},
		{"two keys", "payment-" + canonical + "payment-" + canonical, uuid.Nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, ok := ParseProcessorKey(tc.key)
			if want := tc.want != uuid.Nil; ok != want || got != tc.want {
				t.Errorf("ParseProcessorKey(%q) = %v, %v; want %v, %v", tc.key, got, ok, tc.want, want)
			}
		})
	}
}

func TestParseUID(t *testing.T) {
	uid := NewUID()
	if got, err := ParseUID(uid.String()); err != nil || got != uid {
		t.Fatalf("ParseUID(%q) = %v, %v", uid, got, err)
	}
	for _, s := range []string{"", "100001", "00000000-0000-0000-0000-000000000000", "{" + uid.String() + "}", "urn:uuid:" + uid.String()} {
		if _, err := ParseUID(s); err == nil {
			t.Errorf("ParseUID(%q) succeeded; want an error", s)
		}
	}
}
