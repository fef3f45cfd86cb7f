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

func TestParseProcessorKeyRefusesOtherKeys(t *testing.T) {
	for _, key := range []string{
		"", "payment-", "payment-100001", "demo-123",
		"payment-0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5",  // one character short
		"payment-0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5g", // not hex
		"Payment-0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
	} {
		if uid, ok := ParseProcessorKey(key); ok {
			t.Errorf("ParseProcessorKey(%q) = %v, true; want false", key, uid)
		}
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
