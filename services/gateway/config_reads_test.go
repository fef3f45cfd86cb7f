package main

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/finsvc/finance/services/gateway/internal/cache"
)

func TestLoadReadSettings(t *testing.T) {
	t.Parallel()
	cfg, err := loadConfig(getenv(prodAuth))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ReadPostgres.URL.Reveal() != "" || cfg.CacheMaxBytes != cache.DefaultMaxBytes || cfg.CacheMaxEntries != cache.DefaultMaxEntries {
		t.Errorf("defaults: read %q, cache %d bytes %d entries", cfg.ReadPostgres.URL.Reveal(), cfg.CacheMaxBytes, cfg.CacheMaxEntries)
	}

	cfg, err = loadConfig(getenv(with(prodAuth,
		"DATABASE_READ_URL", "postgres://app:hunter2hunter2@replica:5432/finance",
		"DATABASE_READ_MAX_CONNS", "7",
		"GATEWAY_CACHE_MAX_BYTES", "0",
		"GATEWAY_CACHE_MAX_ENTRIES", "5",
		"GATEWAY_TOKEN_CACHE_MAX_ENTRIES", "0",
		"GATEWAY_TOKEN_CACHE_TTL", "10s")))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ReadPostgres.MaxConns != 7 || cfg.CacheMaxBytes != 0 || cfg.CacheMaxEntries != 5 ||
		cfg.TokenCacheMaxEntries != 0 || cfg.TokenCacheTTL != 10*time.Second {
		t.Errorf("set: %+v", cfg)
	}
	var b bytes.Buffer
	slog.New(slog.NewJSONHandler(&b, nil)).Info("starting", "config", cfg)
	if strings.Contains(b.String(), "hunter2") || !strings.Contains(b.String(), "app:REDACTED@replica:5432") {
		t.Errorf("logged config: %s", b.String())
	}

	_, err = loadConfig(getenv(with(prodAuth,
		"DATABASE_READ_URL", "postgres://[::1", "DATABASE_READ_MAX_CONNS", "0", "GATEWAY_CACHE_MAX_BYTES", "-1",
		"GATEWAY_TOKEN_CACHE_MAX_ENTRIES", "-1", "GATEWAY_TOKEN_CACHE_TTL", "2h")))
	for _, want := range []string{"DATABASE_READ_URL", "DATABASE_READ_MAX_CONNS", "GATEWAY_CACHE_MAX_BYTES",
		"GATEWAY_TOKEN_CACHE_MAX_ENTRIES", "GATEWAY_TOKEN_CACHE_TTL"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("bad %s: error %v", want, err)
		}
	}
}
