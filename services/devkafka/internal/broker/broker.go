// Package broker runs devkafka: one kfake broker that speaks the Kafka
// protocol over TCP and persists its state to a data directory, so a
// development stack keeps its topics, records, committed offsets and
// transactions across restarts.
//
// kfake saves its complete state only when it is closed. Run closes it when
// ctx ends (SIGTERM/SIGINT in main); a process killed with SIGKILL in the
// middle of a transaction leaves kfake's crash recovery hiding records that
// were committed from read_committed consumers. That is why devkafka must be
// stopped with SIGTERM or SIGINT, and why it is for development only.
package broker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/finsvc/finance/pkg/entry"
	"github.com/finsvc/finance/pkg/envconfig"
	"github.com/finsvc/finance/pkg/kafka"
	"github.com/finsvc/finance/pkg/obs"
	"github.com/finsvc/finance/services/devkafka/internal/kfake"
)

// lockFile, inside the data dir, keeps a second devkafka off the same state.
const lockFile = "devkafka.lock"

// Run starts the broker as configured by args and the environment, logs
// "listening" with its address once clients can connect, and serves until
// ctx ends. It then closes the broker, which saves its state to the data
// dir, and returns nil. Bad configuration is an *entry.UsageError.
func Run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := loadConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	dir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return fmt.Errorf("data dir %s: %w", cfg.DataDir, err)
	}
	cfg.DataDir = dir
	logger, err := obs.Start(ctx, stdout, "devkafka", envconfig.Ops{LogLevel: cfg.LogLevel}, cfg)
	if err != nil {
		return &entry.UsageError{Err: err}
	}

	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	fresh, err := isEmptyDir(dir)
	if err != nil {
		return err
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return err
	}
	defer unlock()

	host, port, _ := net.SplitHostPort(cfg.Addr) // checked by loadConfig
	first, _ := strconv.Atoi(port)
	ports := make([]int, cfg.Brokers)
	for i := range ports {
		if first != 0 {
			ports[i] = first + i
		}
	}
	opts := []kfake.Opt{
		kfake.Ports(ports...),
		// kfake would listen on 127.0.0.1:<port>; listen on the configured
		// host too, which is also the address advertised in metadata.
		kfake.ListenFn(func(network, addr string) (net.Listener, error) {
			_, p, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			return net.Listen(network, net.JoinHostPort(host, p))
		}),
		kfake.ClusterID("finance-devkafka"),
		kfake.DataDir(dir),
		kfake.DefaultNumPartitions(cfg.Partitions),
		// Only applied to a fresh data dir; a restored one keeps its topics.
		kfake.SeedTopics(int32(cfg.Partitions), kafka.Topics()...),
		kfake.AllowAutoTopicCreation(),
		kfake.WithLogger(kfakeLogger{logger.With("component", "kfake")}),
	}
	if cfg.SyncWrites {
		opts = append(opts, kfake.SyncWrites())
	}
	cluster, err := kfake.NewCluster(opts...)
	if err != nil {
		return fmt.Errorf("start broker on %s with data dir %s: %w", cfg.Addr, dir, err)
	}
	addrs := cluster.ListenAddrs()
	addr := addrs[0]
	if fresh {
		logger.InfoContext(ctx, "fresh data dir: created the pipeline topics", "topics", kafka.Topics(), "partitions", cfg.Partitions)
	} else {
		logger.InfoContext(ctx, "restored state from the data dir", "data_dir", dir)
	}
	var ctlSrv *http.Server
	if cfg.ControlAddr != "" {
		ln, err := net.Listen("tcp", cfg.ControlAddr)
		if err != nil {
			cluster.Close()
			return fmt.Errorf("control server on %s: %w", cfg.ControlAddr, err)
		}
		ctlSrv = &http.Server{
			Handler:           newControl(cluster, cfg.Brokers, logger).handler(),
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       10 * time.Second,
			WriteTimeout:      10 * time.Second,
			IdleTimeout:       time.Minute,
		}
		go func() { _ = ctlSrv.Serve(ln) }()
		logger.InfoContext(ctx, "control server listening", "control_addr", ln.Addr().String())
	}
	var pprofSrv *http.Server
	if cfg.PprofAddr != "" {
		ln, err := net.Listen("tcp", cfg.PprofAddr)
		if err != nil {
			if ctlSrv != nil {
				_ = ctlSrv.Close()
			}
			cluster.Close()
			return fmt.Errorf("pprof server on %s: %w", cfg.PprofAddr, err)
		}
		mux := http.NewServeMux()
		obs.PprofRoutes(mux)
		pprofSrv = &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: 5 * time.Second,
			WriteTimeout:      5 * time.Minute, // a CPU profile takes ?seconds=N to answer
			IdleTimeout:       time.Minute,
		}
		go func() { _ = pprofSrv.Serve(ln) }()
		logger.InfoContext(ctx, "pprof server listening", "pprof_addr", ln.Addr().String())
	}
	logger.InfoContext(ctx, "listening", "addr", addr, "brokers", addrs)

	<-ctx.Done()
	for _, srv := range []*http.Server{ctlSrv, pprofSrv} {
		if srv == nil {
			continue
		}
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = srv.Shutdown(sctx)
		cancel()
	}
	logger.Info("stopping: saving state to the data dir", "data_dir", dir)
	start := time.Now()
	cluster.Close()
	logger.Info("stopped gracefully: state saved", "data_dir", dir, "took", time.Since(start).String())
	return nil
}

// isEmptyDir reports whether dir has no entries.
func isEmptyDir(dir string) (bool, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false, fmt.Errorf("read data dir: %w", err)
	}
	return len(entries) == 0, nil
}

// lockDir takes an exclusive advisory lock on dir's lock file, held until the
// returned function runs or the process dies.
func lockDir(dir string) (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("data dir %s is in use by another devkafka", dir)
		}
		return nil, fmt.Errorf("lock data dir %s: %w", dir, err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// kfakeLogger sends kfake's log through slog. kfake's info level is
// per-request chatter, so it goes to debug.
type kfakeLogger struct{ l *slog.Logger }

// Logf implements kfake.Logger.
func (k kfakeLogger) Logf(level kfake.LogLevel, msg string, args ...any) {
	var l slog.Level
	switch level {
	case kfake.LogLevelError:
		l = slog.LevelError
	case kfake.LogLevelWarn:
		l = slog.LevelWarn
	case kfake.LogLevelNone:
		return
	default:
		l = slog.LevelDebug
	}
	ctx := context.Background()
	if !k.l.Enabled(ctx, l) {
		return
	}
	k.l.Log(ctx, l, fmt.Sprintf(msg, args...))
}
