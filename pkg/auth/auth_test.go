package auth

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestMintVerify(t *testing.T) {
	t.Parallel()
	secret := []byte(DevSecret)
	now := time.Now()
	v := NewVerifier(secret)

	tok, err := Mint(secret, 3456, false, time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	p, err := v.FromHeader("Bearer " + tok)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Principal{UserID: 3456}, p); diff != "" {
		t.Fatalf("principal (-want +got):\n%s", diff)
	}
	if !p.CanActFor(3456) || p.CanActFor(1) {
		t.Fatal("user token must act only for itself")
	}

	adm, _ := Mint(secret, 1, true, time.Hour, now)
	p, err = v.Verify(adm)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Principal{UserID: 1, Admin: true}, p); diff != "" {
		t.Errorf("admin principal (-want +got):\n%s", diff)
	}
	if !p.CanActFor(99) {
		t.Error("an admin token must act for every user")
	}

	bad := []struct{ name, header string }{
		{"empty", ""},
		{"no scheme", tok},
		{"basic", "Basic " + tok},
		{"garbage", "Bearer abc.def.ghi"},
	}
	expired, _ := Mint(secret, 1, false, time.Minute, now.Add(-time.Hour))
	bad = append(bad, struct{ name, header string }{"expired", "Bearer " + expired})
	other, _ := Mint([]byte("another-secret-another-secret-xx"), 1, false, time.Hour, now)
	bad = append(bad, struct{ name, header string }{"wrong secret", "Bearer " + other})
	for _, b := range bad {
		if _, err := v.FromHeader(b.header); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("%s: err = %v, want ErrInvalidToken", b.name, err)
		}
	}
}
