package cli

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/finsvc/finance/pkg/auth"
)

func tokenCommand() *command {
	var (
		user                   int64
		admin                  bool
		ttl, notBefore         time.Duration
		keyPath, kid, iss, aud string
	)
	return &command{
		name: "token",
		args: "--user N [--admin] [--ttl 24h] [--key FILE.pem [--kid K] --issuer ISS --audience AUD]",
		summary: "print a bearer token for user N: with --key an RS256/ES256 token signed by that key (see keys generate), " +
			"else an HS256 dev token signed with AUTH_JWT_SECRET (auth.DevSecret when unset and FINANCE_DEV_MODE=true)",
		flags: func(*env) *flag.FlagSet {
			fs := newFlagSet("token")
			fs.Int64Var(&user, "user", 0, "user id `N` the token speaks for (required)")
			fs.BoolVar(&admin, "admin", false, "add the admin scope: act for any user and use the admin routes")
			fs.DurationVar(&ttl, "ttl", 24*time.Hour, "how long the token is valid")
			fs.StringVar(&keyPath, "key", "", "PEM private `FILE` to sign with (RS256 or ES256, as its key type); the gateway must have its public key in AUTH_JWKS_URL")
			fs.StringVar(&kid, "kid", "", "key id in the header (default: the key's RFC 7638 thumbprint, as keys generate publishes it)")
			fs.StringVar(&iss, "issuer", "", "iss claim: the gateway's AUTH_ISSUER")
			fs.StringVar(&aud, "audience", "", "aud claim: the gateway's AUTH_AUDIENCE")
			fs.DurationVar(&notBefore, "not-before", 0, "nbf claim this far from now (negative: in the past); 0 leaves nbf out")
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
			now := time.Now()
			c := auth.Claims{UserID: user, Admin: admin, Issuer: iss, Audience: aud, IssuedAt: now, ExpiresAt: now.Add(ttl)}
			if notBefore != 0 {
				c.NotBefore = now.Add(notBefore)
			}
			var signWith any
			if keyPath != "" {
				pemBytes, err := os.ReadFile(keyPath)
				if err != nil {
					return err
				}
				key, err := auth.ParsePrivateKey(pemBytes)
				if err != nil {
					return fmt.Errorf("%s: %w", keyPath, err)
				}
				if kid == "" {
					if kid, err = auth.KeyID(key.Public()); err != nil {
						return err
					}
				}
				signWith = key
			} else {
				if kid != "" {
					return usagef("--kid needs --key")
				}
				secret, err := jwtSecret(e)
				if err != nil {
					return err
				}
				signWith = []byte(secret)
			}
			tok, err := auth.Sign(signWith, kid, c)
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
