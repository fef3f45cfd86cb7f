package main

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/finsvc/finance/pkg/envconfig"
	"github.com/finsvc/finance/services/processor-sim/internal/sim"
)

// minKeyTTL is the shortest key retention the proposed API promises.
const minKeyTTL = 24 * time.Hour

// config is the simulator's settings, read from the environment once.
type config struct {
	HTTPAddr string
	// Ops has no address of its own: /metrics is served on HTTP_ADDR.
	Ops    envconfig.Ops
	KeyTTL time.Duration
	Seed   uint64
	// SeedSet is false when the seed was drawn at random (logged, so that a
	// run can be reproduced).
	SeedSet  bool
	DataFile string
	Sim      sim.Settings
}

// loadConfig reads the configuration from getenv and reports every problem at once.
func loadConfig(getenv func(string) string) (config, error) {
	r := envconfig.New(getenv)
	limit := r.Float("SIM_RATE_LIMIT", 300)
	c := config{
		HTTPAddr: r.String("HTTP_ADDR", ":8090"),
		KeyTTL:   r.Duration("SIM_KEY_TTL", 72*time.Hour),
		DataFile: r.String("SIM_DATA_FILE", ""),
		Sim: sim.Settings{
			API:              sim.API(r.String("SIM_API", string(sim.APIProposed))),
			RateLimit:        limit,
			RateBurst:        r.Int("SIM_RATE_BURST", sim.DefaultBurst(limit)),
			LatencyP50:       sim.Duration(r.Duration("SIM_LATENCY_P50", 50*time.Millisecond)),
			LatencyP99:       sim.Duration(r.Duration("SIM_LATENCY_P99", 250*time.Millisecond)),
			DeclineRate:      r.Float("SIM_DECLINE_RATE", 0),
			ErrorRate:        r.Float("SIM_ERROR_RATE", 0),
			LostResponseRate: r.Float("SIM_LOST_RESPONSE_RATE", 0),
		},
	}
	if v := r.String("SIM_SEED", ""); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			r.Fail("SIM_SEED=%q: want a non-negative integer", v)
		}
		c.Seed, c.SeedSet = n, true
	} else {
		c.Seed = rand.Uint64()
	}
	if c.KeyTTL < minKeyTTL {
		r.Fail("SIM_KEY_TTL=%v: the proposed API keeps keys at least %v", c.KeyTTL, minKeyTTL)
	}
	if err := c.Sim.Validate(); err != nil {
		r.Fail("SIM_* settings: %w", err)
	}
	c.Ops = envconfig.LoadOps(r, envconfig.Ops{LogLevel: "info", ShutdownTimeout: 10 * time.Second})
	if err := r.Err(); err != nil {
		return config{}, fmt.Errorf("config: %w", err)
	}
	return c, nil
}

// LogValue is the configuration as it is logged at start.
func (c config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("http_addr", c.HTTPAddr),
		slog.Any("ops", c.Ops),
		slog.String("key_ttl", c.KeyTTL.String()),
		slog.Uint64("seed", c.Seed),
		slog.Bool("seed_set", c.SeedSet),
		slog.String("data_file", c.DataFile),
		slog.Any("settings", c.Sim),
	)
}
