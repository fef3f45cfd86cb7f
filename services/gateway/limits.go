package main

import (
	"log/slog"

	"github.com/finsvc/finance/pkg/envconfig"
	"github.com/finsvc/finance/services/gateway/internal/abuse"
	"github.com/finsvc/finance/services/gateway/internal/httpapi"
	"github.com/finsvc/finance/services/gateway/internal/ratelimit"
)

// loadLimits reads the per-client rate limits (GATEWAY_RATE_LIMIT_*), with
// httpapi.DefaultLimits as defaults. GATEWAY_RATE_LIMIT=false turns all of
// them off; a rate or burst of 0 turns one off. The header cap comes from
// HTTP_MAX_HEADER_BYTES (envconfig.Ops.HTTP), set by loadConfig.
func loadLimits(r *envconfig.Reader) httpapi.Limits {
	d := httpapi.DefaultLimits
	policy := func(name string, def ratelimit.Policy) ratelimit.Policy {
		p := ratelimit.Policy{
			Rate:  r.Float("GATEWAY_RATE_LIMIT_"+name+"_RATE", def.Rate),
			Burst: r.Int("GATEWAY_RATE_LIMIT_"+name+"_BURST", def.Burst),
		}
		if p.Rate < 0 || p.Burst < 0 {
			r.Fail("GATEWAY_RATE_LIMIT_%s_RATE=%g, _BURST=%d: want 0 (off) or more", name, p.Rate, p.Burst)
		}
		return p
	}
	l := httpapi.Limits{
		IP:      policy("IP", d.IP),
		User:    policy("USER", d.User),
		Admin:   policy("ADMIN", d.Admin),
		MaxKeys: r.IntIn("GATEWAY_RATE_LIMIT_MAX_KEYS", d.MaxKeys, 1, 10_000_000),
	}
	if !r.Bool("GATEWAY_RATE_LIMIT", true) {
		l.IP, l.User, l.Admin = ratelimit.Policy{}, ratelimit.Policy{}, ratelimit.Policy{}
	}
	return l
}

// loadBlockPolicy reads when an address that keeps getting refused is shut
// out (abuse.DefaultPolicy as defaults): GATEWAY_BLOCK_REFUSALS_RATE and
// _BURST, its budget of refused requests; GATEWAY_BLOCK_FOR, the first
// block; GATEWAY_BLOCK_MAX, the longest; GATEWAY_BLOCK_PROBATION;
// GATEWAY_BLOCK_HOLD_PER_ADDRESS, _HOLD_MAX and _HOLD_FOR, the connections
// of blocked addresses held unread (0 resets them all at once).
// GATEWAY_BLOCK=false, a zero rate or burst, or GATEWAY_RATE_LIMIT=false
// turns it off: behind a proxy, whose address every client shares, it must
// be off.
func loadBlockPolicy(r *envconfig.Reader) abuse.Policy {
	d := abuse.DefaultPolicy
	p := abuse.Policy{
		Refusals: ratelimit.Policy{
			Rate:  r.Float("GATEWAY_BLOCK_REFUSALS_RATE", d.Refusals.Rate),
			Burst: r.Int("GATEWAY_BLOCK_REFUSALS_BURST", d.Refusals.Burst),
		},
		Block:     r.PositiveDuration("GATEWAY_BLOCK_FOR", d.Block),
		MaxBlock:  r.PositiveDuration("GATEWAY_BLOCK_MAX", d.MaxBlock),
		Probation: r.PositiveDuration("GATEWAY_BLOCK_PROBATION", d.Probation),

		HoldPerAddress: r.IntIn("GATEWAY_BLOCK_HOLD_PER_ADDRESS", d.HoldPerAddress, 0, 1_000_000),
		HoldMax:        r.IntIn("GATEWAY_BLOCK_HOLD_MAX", d.HoldMax, 0, 1_000_000),
		HoldFor:        r.PositiveDuration("GATEWAY_BLOCK_HOLD_FOR", d.HoldFor),
	}
	if p.Refusals.Rate < 0 || p.Refusals.Burst < 0 {
		r.Fail("GATEWAY_BLOCK_REFUSALS_RATE=%g, _BURST=%d: want 0 (off) or more", p.Refusals.Rate, p.Refusals.Burst)
	}
	if !r.Bool("GATEWAY_BLOCK", true) || !r.Bool("GATEWAY_RATE_LIMIT", true) {
		return abuse.Policy{}
	}
	return p
}

// blockLogValue is how the block policy shows in the "starting" line.
func blockLogValue(p abuse.Policy) slog.Value {
	if !p.Enabled() {
		return slog.StringValue("off")
	}
	return slog.GroupValue(
		slog.Float64("refusals_rate", p.Refusals.Rate), slog.Int("refusals_burst", p.Refusals.Burst),
		slog.String("for", p.Block.String()), slog.String("max", p.MaxBlock.String()),
		slog.String("probation", p.Probation.String()),
		slog.Int("hold_per_address", p.HoldPerAddress), slog.Int("hold_max", p.HoldMax),
		slog.String("hold_for", p.HoldFor.String()),
	)
}

// limitsLogValue is how the limits show in the "starting" line.
func limitsLogValue(l httpapi.Limits) slog.Value {
	policy := func(p ratelimit.Policy) slog.Value {
		if !p.Enabled() {
			return slog.StringValue("off")
		}
		return slog.GroupValue(slog.Float64("rate", p.Rate), slog.Int("burst", p.Burst))
	}
	return slog.GroupValue(
		slog.Any("ip", policy(l.IP)),
		slog.Any("user", policy(l.User)),
		slog.Any("admin", policy(l.Admin)),
		slog.Int("max_keys", l.MaxKeys),
		slog.Int("max_header_bytes", l.MaxHeaderBytes),
	)
}

// loadLogPolicy reads which requests the request log keeps:
// LOG_READ_SAMPLE (10: one in ten successful reads and 429s; 1 logs every
// one), LOG_REFUSALS_PER_SECOND (100: other 4xx answers logged in full per
// second, then sampled as reads; 0 logs every one) and LOG_SLOW_REQUEST
// (500ms: slower requests are always logged).
func loadLogPolicy(r *envconfig.Reader) httpapi.LogPolicy {
	return httpapi.LogPolicy{
		ReadSample:        r.IntIn("LOG_READ_SAMPLE", 10, 1, 1_000_000),
		RefusalsPerSecond: r.IntIn("LOG_REFUSALS_PER_SECOND", 100, 0, 1_000_000),
		Slow:              r.PositiveDuration("LOG_SLOW_REQUEST", httpapi.DefaultSlowRequest),
	}
}
