package main

import (
	"log/slog"

	"github.com/finsvc/finance/pkg/envconfig"
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
// one) and LOG_SLOW_REQUEST (500ms: slower requests are always logged).
func loadLogPolicy(r *envconfig.Reader) httpapi.LogPolicy {
	return httpapi.LogPolicy{
		ReadSample: r.IntIn("LOG_READ_SAMPLE", 10, 1, 1_000_000),
		Slow:       r.PositiveDuration("LOG_SLOW_REQUEST", httpapi.DefaultSlowRequest),
	}
}
