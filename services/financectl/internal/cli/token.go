package cli

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/finsvc/finance/pkg/auth"
)

func tokenCommand() *command {
	var (
		user  int64
		admin bool
		ttl   time.Duration
	)
	return &command{
		name: "token",
		args: "--user N [--admin] [--ttl 24h]",
		summary: "print a bearer token (HS256 JWT) for user N signed with AUTH_JWT_SECRET " +
			"(auth.DevSecret when unset and FINANCE_DEV_MODE=true)",
		flags: func(*env) *flag.FlagSet {
			fs := newFlagSet("token")
			fs.Int64Var(&user, "user", 0, "user id `N` the token speaks for (required)")
			fs.BoolVar(&admin, "admin", false, "add the admin scope: act for any user and use the admin routes")
			fs.DurationVar(&ttl, "ttl", 24*time.Hour, "how long the token is valid")
			return fs
		},
		run: func(_ context.Context, e *env, fs *flag.FlagSet) error {
			if err := noArgs(fs); err != nil {
				return err
			}
			if user < 1 {
				return usagef("--user N is required and must be a positive user id")
			}
			if ttl <= 0 {
				return usagef("--ttl %s must be positive", ttl)
			}
			secret, err := jwtSecret(e)
			if err != nil {
				return err
			}
			tok, err := auth.Mint([]byte(secret), user, admin, ttl, time.Now())
			if err != nil {
				return fmt.Errorf("mint token: %w", err)
			}
			fmt.Fprintln(e.stdout, tok)
			return nil
		},
	}
}

// jwtSecret returns AUTH_JWT_SECRET, or auth.DevSecret in dev mode.
func jwtSecret(e *env) (string, error) {
	s := e.cfg.JWTSecret.Reveal()
	switch {
	case s == "" && e.cfg.DevMode:
		fmt.Fprintln(e.stderr, "financectl token: AUTH_JWT_SECRET is not set: signed with the public dev secret, "+
			"which only a gateway in dev mode (make run's) accepts")
		return auth.DevSecret, nil
	case s == "":
		return "", fmt.Errorf("AUTH_JWT_SECRET is not set and FINANCE_DEV_MODE=false: set it to the gateway's secret")
	case len(s) < auth.MinSecretLen:
		return "", fmt.Errorf("AUTH_JWT_SECRET is %d bytes, want at least %d", len(s), auth.MinSecretLen)
	}
	return s, nil
}
