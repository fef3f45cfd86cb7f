package obs

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/finsvc/finance/pkg/envconfig"
)

// RunWorker runs a background service's work beside its ops port
// (/healthz, /readyz answered by ready, /metrics from reg, /loglevel) until
// ctx ends or either of them fails, then logs "stopped" with the error.
// The outbox relay, the status consumer and the webhook delivery service
// end their run with it.
func RunWorker(ctx context.Context, logger *slog.Logger, ops envconfig.Ops, reg *prometheus.Registry,
	ready ReadyFunc, work func(context.Context) error) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		return Serve(gctx, logger, "ops", ops.Addr, OpsMux(reg, ready, WithLogLevel(logger)), ops.HTTP, ops.ShutdownTimeout)
	})
	g.Go(func() error { return work(gctx) })
	err := g.Wait()
	logger.InfoContext(ctx, "stopped", "err", err)
	return err
}
