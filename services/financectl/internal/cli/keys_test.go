package cli_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/finsvc/finance/pkg/auth"
)

// TestKeysAndSignedTokens: keys generate writes a key pair, token --key
// signs with it, and a production verifier reading the JWKS as a file://
// URL accepts the token; a second key added with --jwks rotates in while
// the first one stays valid.
func TestKeysAndSignedTokens(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	first, second := filepath.Join(dir, "k1"), filepath.Join(dir, "k2")
	jwks := filepath.Join(first, "jwks.json")
	if got := run(t, nil, "keys", "generate", "--out", first); got.code != exitOK {
		t.Fatalf("keys generate: exit %d: %s", got.code, got.stderr)
	}
	if got := run(t, nil, "keys", "generate", "--out", second, "--alg", "RS256", "--jwks", jwks); got.code != exitOK {
		t.Fatalf("keys generate (rotation): exit %d: %s", got.code, got.stderr)
	}
	if got := run(t, nil, "keys", "generate", "--out", first); got.code == exitOK || !strings.Contains(got.stderr, "exists") {
		t.Errorf("generate over an existing key: exit %d, stderr %q", got.code, got.stderr)
	}
	if fi, err := os.Stat(filepath.Join(first, "private.pem")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("private.pem: %v, mode %v", err, fi.Mode())
	}
	v, err := auth.New(context.Background(), auth.Config{JWKSURL: "file://" + jwks, Issuer: "iss-1", Audience: "aud-1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	for _, tc := range []struct {
		key  string
		args []string
		want auth.Principal
	}{
		{filepath.Join(first, "private.pem"), []string{"--user", "3456"}, auth.Principal{UserID: 3456}},
		{filepath.Join(second, "private.pem"), []string{"--user", "1", "--admin"}, auth.Principal{UserID: 1, Admin: true}},
	} {
		got := run(t, nil, append([]string{"token", "--key", tc.key, "--issuer", "iss-1", "--audience", "aud-1"}, tc.args...)...)
		if got.code != exitOK {
			t.Fatalf("token --key %s: exit %d: %s", tc.key, got.code, got.stderr)
		}
		p, err := v.Verify(strings.TrimSpace(got.stdout))
		if err != nil {
			t.Fatalf("token of %s: %v", tc.key, err)
		}
		if diff := cmp.Diff(tc.want, p); diff != "" {
			t.Errorf("principal (-want +got):\n%s", diff)
		}
	}
	// Wrong audience and a not-yet-valid token are refused, so the flags reach the claims.
	for _, args := range [][]string{{"--audience", "other"}, {"--audience", "aud-1", "--not-before", "10m"}} {
		got := run(t, nil, append([]string{"token", "--user", "5", "--key", filepath.Join(first, "private.pem"), "--issuer", "iss-1"}, args...)...)
		if _, err := v.Verify(strings.TrimSpace(got.stdout)); !errors.Is(err, auth.ErrInvalidToken) {
			t.Errorf("token %v: %v, want refused", args, err)
		}
	}
}
