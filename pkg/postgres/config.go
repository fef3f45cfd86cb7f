package postgres

import (
	"context"
	"log/slog"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/finsvc/finance/pkg/envconfig"
)

// DefaultURL is the pipeline's database on a developer machine.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/finance?sslmode=disable"

// Config is the database settings of every service that has one, read from
// the environment by LoadConfig and embedded in each service's config.
type Config struct {
	URL      envconfig.Secret // DATABASE_URL; may carry a password, so logged redacted
	MaxConns int              // DATABASE_MAX_CONNS: the size of the connection pool
}

// LoadConfig reads DATABASE_URL and DATABASE_MAX_CONNS, with def's values as
// defaults (def.URL empty: DefaultURL), and checks them. A service whose
// pool size had its own name calls r.Rename(oldName, "DATABASE_MAX_CONNS")
// first.
func LoadConfig(r *envconfig.Reader, def Config) Config {
	if def.URL == "" {
		def.URL = DefaultURL
	}
	p := Config{
		URL:      envconfig.Secret(r.String("DATABASE_URL", string(def.URL))),
		MaxConns: r.IntIn("DATABASE_MAX_CONNS", def.MaxConns, 1, 1000),
	}
	if _, err := pgx.ParseConfig(p.URL.Reveal()); err != nil {
		r.Fail("DATABASE_URL=%s: %v", RedactURL(p.URL.Reveal()), err)
	}
	return p
}

// Connect opens a pool of MaxConns connections to URL (see Connect).
func (p Config) Connect(ctx context.Context) (*pgxpool.Pool, error) {
	return Connect(ctx, p.URL.Reveal(), int32(p.MaxConns))
}

// LogValue logs the settings with the password redacted.
func (p Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("url", RedactURL(p.URL.Reveal())),
		slog.Int("max_conns", p.MaxConns),
	)
}
