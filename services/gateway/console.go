package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/finsvc/finance/pkg/envconfig"
	"github.com/finsvc/finance/pkg/postgres"
)

// consoleConfig is the operator console's settings (internal/console).
type consoleConfig struct {
	// Enabled (GATEWAY_CONSOLE, true unless "false") serves /console;
	// off, nothing of the console runs and /console is a 404, for a
	// gateway whose operators use financectl and the admin API only.
	Enabled bool
	// ProcessorURL (GATEWAY_PROCESSOR_URL) enables "resolve from
	// processor" and the dry-run reconciliation; empty: both say how to
	// enable them. ProcessorStatementURL (GATEWAY_PROCESSOR_STATEMENT_URL)
	// overrides the statement's URL (default: processor-sim's
	// <url>/sim/executions; "none": the lookup alone).
	ProcessorURL          string
	ProcessorStatementURL string
	// RateLimit is L, the processor's global limit in payments per second
	// (GATEWAY_PROCESSOR_RATE_LIMIT, the dispatchers' PROCESSOR_RATE_LIMIT);
	// 0: the overview shows no utilization or drain estimate.
	RateLimit float64
	// Reconcile (GATEWAY_RECONCILE_DATABASE_URL) is the connection the
	// console resolves unknown payments with: finance_reconciler
	// (migration 00015), which may settle as the reconciler does and
	// nothing else (finance_gateway may not settle; the schema's owner
	// may do anything, and the gateway faces the internet). Empty: the
	// gateway's DATABASE_URL, enough only where that is the schema's
	// owner (make run and the chart set it: services/devstack,
	// gateway.console.reconcileUrlKey).
	Reconcile postgres.Config
}

// loadConsoleConfig reads the console's settings through r.
func loadConsoleConfig(r *envconfig.Reader) consoleConfig {
	c := consoleConfig{
		Enabled:               r.Bool("GATEWAY_CONSOLE", true),
		ProcessorURL:          r.String("GATEWAY_PROCESSOR_URL", ""),
		ProcessorStatementURL: r.String("GATEWAY_PROCESSOR_STATEMENT_URL", ""),
		RateLimit:             r.Float("GATEWAY_PROCESSOR_RATE_LIMIT", 0),
		Reconcile:             postgres.Config{URL: r.Secret("GATEWAY_RECONCILE_DATABASE_URL", "")},
	}
	for key, v := range map[string]string{"GATEWAY_PROCESSOR_URL": c.ProcessorURL, "GATEWAY_PROCESSOR_STATEMENT_URL": c.ProcessorStatementURL} {
		if v == "" || v == "none" && key == "GATEWAY_PROCESSOR_STATEMENT_URL" {
			continue
		}
		if u, err := url.Parse(v); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			r.Fail("%s=%q: want an http or https URL", key, v)
		}
	}
	if c.RateLimit < 0 {
		r.Fail("GATEWAY_PROCESSOR_RATE_LIMIT=%v: must not be negative (0: unknown)", c.RateLimit)
	}
	if u := c.Reconcile.URL.Reveal(); u != "" {
		c.Reconcile.MaxConns = 2 // one resolution at a time, and a spare
		if _, err := pgx.ParseConfig(u); err != nil {
			r.Fail("GATEWAY_RECONCILE_DATABASE_URL=%s: %v", postgres.RedactURL(u), err)
		}
	}
	return c
}

// LogValue is the console's settings as logged at start.
func (c consoleConfig) LogValue() slog.Value {
	rec := "DATABASE_URL's"
	if c.Reconcile.URL.Reveal() != "" {
		rec = postgres.RedactURL(c.Reconcile.URL.Reveal())
	}
	return slog.GroupValue(
		slog.Bool("enabled", c.Enabled),
		slog.String("processor_url", c.ProcessorURL),
		slog.String("processor_statement_url", c.ProcessorStatementURL),
		slog.Float64("processor_rate_limit", c.RateLimit),
		slog.String("reconcile_database", rec),
	)
}

// connectReconcile opens GATEWAY_RECONCILE_DATABASE_URL's pool; nil, and a
// no-op close, when it is unset or the console is off.
func (c consoleConfig) connectReconcile(ctx context.Context) (*pgxpool.Pool, func(), error) {
	if !c.Enabled || c.Reconcile.URL.Reveal() == "" {
		return nil, func() {}, nil
	}
	pool, err := c.Reconcile.Connect(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("connect the console's reconciler (GATEWAY_RECONCILE_DATABASE_URL): %w", err)
	}
	return pool, pool.Close, nil
}
