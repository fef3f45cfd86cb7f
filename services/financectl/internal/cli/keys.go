package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	iofs "io/fs"
	"os"
	"path/filepath"

	"github.com/finsvc/finance/pkg/auth"
)

// keysCommand makes the key pair of a stand-in identity provider, so that a
// tester can run a gateway outside dev mode: it verifies tokens against the
// jwks.json written here (AUTH_JWKS_URL=file:///.../jwks.json) and `token
// --key` signs them with the private key.
func keysCommand() *command {
	var (
		out, alg, jwksPath string
	)
	return &command{
		name: "keys",
		args: "generate --out DIR [--alg ES256|RS256] [--jwks FILE]",
		summary: "make a signing key pair for tests: DIR/private.pem and its public key in a JWKS " +
			"(DIR/jwks.json, or added to --jwks FILE to rotate keys); serve it to the gateway as AUTH_JWKS_URL=file://...",
		flags: func(*env) *flag.FlagSet {
			fs := newFlagSet("keys")
			fs.StringVar(&out, "out", "", "directory `DIR` for private.pem (required; created if missing)")
			fs.StringVar(&alg, "alg", auth.AlgES256, "signing algorithm: ES256 (P-256) or RS256 (RSA 2048)")
			fs.StringVar(&jwksPath, "jwks", "", "JWKS `FILE` the public key is added to (default DIR/jwks.json); "+
				"its other keys are kept, so an old key stays valid until you remove it")
			return fs
		},
		run: func(_ context.Context, e *env, fs *flag.FlagSet) error {
			if fs.NArg() < 1 || fs.Arg(0) != "generate" {
				return usagef("want: keys generate --out DIR")
			}
			// The flags come after the verb, where the first Parse stopped.
			if err := fs.Parse(fs.Args()[1:]); err != nil {
				return usagef("keys generate: %v", err)
			}
			if fs.NArg() > 0 {
				return usagef("keys generate: unexpected argument %q", fs.Arg(0))
			}
			if out == "" {
				return usagef("--out DIR is required")
			}
			if alg != auth.AlgES256 && alg != auth.AlgRS256 {
				return usagef("--alg %q: want ES256 or RS256", alg)
			}
			if jwksPath == "" {
				jwksPath = filepath.Join(out, "jwks.json")
			}
			keyPath := filepath.Join(out, "private.pem")
			if _, err := os.Stat(keyPath); err == nil {
				return fmt.Errorf("%s exists: pick another --out (to rotate, write the new key elsewhere and add it with --jwks %s)", keyPath, jwksPath)
			}
			key, err := auth.GenerateKey(alg)
			if err != nil {
				return err
			}
			pemBytes, err := auth.MarshalPrivateKey(key)
			if err != nil {
				return err
			}
			existing, err := os.ReadFile(jwksPath)
			if err != nil && !errors.Is(err, iofs.ErrNotExist) {
				return err
			}
			set, err := auth.PublicJWKS(existing, key)
			if err != nil {
				return fmt.Errorf("%s: %w", jwksPath, err)
			}
			if err := os.MkdirAll(out, 0o700); err != nil {
				return err
			}
			if err := os.WriteFile(keyPath, pemBytes, 0o600); err != nil {
				return err
			}
			if err := writeFileAtomic(jwksPath, append(set, '\n')); err != nil {
				return err
			}
			kid, err := auth.KeyID(key.Public())
			if err != nil {
				return err
			}
			abs, err := filepath.Abs(jwksPath)
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "private key %s (%s, kid %s)\nJWKS        %s\n  gateway:  AUTH_JWKS_URL=file://%s\n  token:    financectl token --user N --key %s --issuer ISS --audience AUD\n",
				keyPath, alg, kid, jwksPath, abs, keyPath)
			return nil
		},
	}
}

// writeFileAtomic replaces path with data through a rename, so that a
// gateway reading the JWKS never sees half a file.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".jwks-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
