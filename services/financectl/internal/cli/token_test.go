package cli_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/finsvc/finance/pkg/auth"
)

func TestToken(t *testing.T) {
	t.Parallel()
	const secret = "0123456789abcdef0123456789abcdef-test"
	tests := []struct {
		name       string
		env        map[string]string
		args       []string
		wantSecret string // verifies the printed token
		want       auth.Principal
		wantStderr string
	}{
		{
			name:       "user token",
			env:        map[string]string{"AUTH_JWT_SECRET": secret},
			args:       []string{"--user", "3456"},
			wantSecret: secret,
			want:       auth.Principal{UserID: 3456},
		},
		{
			name:       "admin token with ttl",
			env:        map[string]string{"AUTH_JWT_SECRET": secret},
			args:       []string{"--user", "1", "--admin", "--ttl", "5m"},
			wantSecret: secret,
			want:       auth.Principal{UserID: 1, Admin: true},
		},
		{
			name:       "dev mode falls back to the dev secret",
			env:        map[string]string{"FINANCE_DEV_MODE": "true"},
			args:       []string{"--user", "1001"},
			wantSecret: auth.DevSecret,
			want:       auth.Principal{UserID: 1001},
			wantStderr: "public dev secret",
		},
		{
			// As the README shows it, from a second terminal while make run runs.
			name:       "nothing set: the dev secret, as make run's gateway expects",
			args:       []string{"--user", "3456"},
			wantSecret: auth.DevSecret,
			want:       auth.Principal{UserID: 3456},
			wantStderr: "only a gateway in dev mode",
		},
		{
			name:       "a set secret wins over dev mode",
			env:        map[string]string{"FINANCE_DEV_MODE": "true", "AUTH_JWT_SECRET": secret},
			args:       []string{"--user", "2"},
			wantSecret: secret,
			want:       auth.Principal{UserID: 2},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := run(t, tt.env, append([]string{"token"}, tt.args...)...)
			if got.code != exitOK {
				t.Fatalf("exit %d, stderr:\n%s", got.code, got.stderr)
			}
			if !strings.HasSuffix(got.stdout, "\n") || strings.Count(got.stdout, "\n") != 1 {
				t.Errorf("stdout = %q, want one line", got.stdout)
			}
			p, err := auth.NewVerifier([]byte(tt.wantSecret)).Verify(strings.TrimSpace(got.stdout))
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if diff := cmp.Diff(tt.want, p); diff != "" {
				t.Errorf("principal (-want +got):\n%s", diff)
			}
			if _, err := auth.NewVerifier([]byte("another-secret-another-secret-xx")).Verify(strings.TrimSpace(got.stdout)); err == nil {
				t.Error("token verifies with another secret")
			}
			if !strings.Contains(got.stderr, tt.wantStderr) {
				t.Errorf("stderr = %q, want it to contain %q", got.stderr, tt.wantStderr)
			}
		})
	}
}

func TestTokenWithoutSecretFails(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"unset, dev mode off", map[string]string{"FINANCE_DEV_MODE": "false"}, "financectl: token: AUTH_JWT_SECRET is not set and FINANCE_DEV_MODE=false"},
		{"too short", map[string]string{"AUTH_JWT_SECRET": "short"}, "AUTH_JWT_SECRET is 5 bytes, want at least 32"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := run(t, tt.env, "token", "--user", "1")
			if got.code != exitError {
				t.Errorf("exit %d, want %d", got.code, exitError)
			}
			if got.stdout != "" || !strings.Contains(got.stderr, tt.want) {
				t.Errorf("stdout %q stderr %q, want no token and %q", got.stdout, got.stderr, tt.want)
			}
		})
	}
}
