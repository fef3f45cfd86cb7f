package broker

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"

	"github.com/finsvc/finance/pkg/entry"
	"github.com/finsvc/finance/pkg/envconfig"
	"github.com/finsvc/finance/pkg/kafka"
)

// Config is devkafka's configuration.
type Config struct {
	// Addr is the one listener's host:port. The broker advertises exactly
	// this address in metadata, so the host must be a loopback address
	// clients can dial; port 0 picks a free port.
	Addr string
	// DataDir holds the broker's topics, records, offsets and transaction
	// state; it is created if missing.
	DataDir string
	// Partitions is the partition count of the pipeline topics seeded into
	// a fresh data dir and of auto-created topics.
	Partitions int
	// SyncWrites fsyncs every produced batch (slower; default off, like Kafka).
	SyncWrites bool
	LogLevel   string
	// Brokers is the number of brokers in the cluster. Extra brokers listen
	// on the ports after Addr's (Addr+1, Addr+2, ...), or on random ports
	// when Addr's port is 0. More than one broker lets the control API move
	// partition leaders.
	Brokers int
	// ControlAddr, when set, is the host:port of the fault-control HTTP
	// server (see control.go); empty means no control server.
	ControlAddr string
	// PprofAddr, when set, is the host:port of an HTTP server with
	// net/http/pprof's handlers under /debug/pprof/ (CPU profiles of the
	// broker under load); empty means none.
	PprofAddr string
}

// loadConfig reads the environment through getenv, then lets flags in args
// override it, and reports every problem at once.
func loadConfig(args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	r := envconfig.New(getenv)
	c := Config{
		Addr:       r.String("DEVKAFKA_ADDR", "127.0.0.1:9092"),
		DataDir:    r.String("DEVKAFKA_DATA_DIR", ".run/kafka"),
		Partitions: r.Int("DEVKAFKA_PARTITIONS", kafka.DefaultPartitions),
		SyncWrites: r.Bool("DEVKAFKA_SYNC_WRITES", false),
		LogLevel:   r.LogLevel("info"),
		Brokers:    r.Int("DEVKAFKA_BROKERS", 1),

		ControlAddr: r.String("DEVKAFKA_CONTROL_ADDR", ""),
		PprofAddr:   r.String("DEVKAFKA_PPROF_ADDR", ""),
	}

	fs := flag.NewFlagSet("devkafka", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are returned; only -h prints here
	fs.StringVar(&c.Addr, "addr", c.Addr, "listen `host:port` (loopback only; env DEVKAFKA_ADDR)")
	fs.StringVar(&c.DataDir, "data-dir", c.DataDir, "persistence `dir`ectory (env DEVKAFKA_DATA_DIR)")
	fs.IntVar(&c.Partitions, "partitions", c.Partitions, "partitions of seeded and auto-created topics (env DEVKAFKA_PARTITIONS)")
	fs.BoolVar(&c.SyncWrites, "sync-writes", c.SyncWrites, "fsync every produced batch (env DEVKAFKA_SYNC_WRITES)")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "debug, info, warn or error (env LOG_LEVEL)")
	fs.IntVar(&c.Brokers, "brokers", c.Brokers, "number of brokers, on consecutive ports from -addr's (env DEVKAFKA_BROKERS)")
	fs.StringVar(&c.ControlAddr, "control-addr", c.ControlAddr, "fault-control HTTP `host:port`, empty for none (loopback only; env DEVKAFKA_CONTROL_ADDR)")
	fs.StringVar(&c.PprofAddr, "pprof-addr", c.PprofAddr, "pprof HTTP `host:port`, empty for none (loopback only; env DEVKAFKA_PPROF_ADDR)")
	usage := func() string {
		var b strings.Builder
		fmt.Fprintln(&b, "usage: devkafka [flags]\n\nA development Kafka broker; flags override the environment.")
		fs.SetOutput(&b)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
		return b.String()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stderr, usage())
			return Config{}, err
		}
		return Config{}, &entry.UsageError{Err: err, Usage: usage()}
	}
	if fs.NArg() > 0 {
		return Config{}, &entry.UsageError{Err: fmt.Errorf("unexpected argument %q", fs.Arg(0)), Usage: usage()}
	}

	if err := checkAddr(c.Addr); err != nil {
		r.Fail("addr %q: %w", c.Addr, err)
	}
	if strings.TrimSpace(c.DataDir) == "" {
		r.Fail("data dir: must not be empty")
	}
	if c.Partitions < 1 {
		r.Fail("partitions %d: must be at least 1", c.Partitions)
	}
	if c.Brokers < 1 || c.Brokers > 16 {
		r.Fail("brokers %d: want 1 to 16", c.Brokers)
	}
	if c.ControlAddr != "" {
		if err := checkAddr(c.ControlAddr); err != nil {
			r.Fail("control addr %q: %w", c.ControlAddr, err)
		}
	}
	if c.PprofAddr != "" {
		if err := checkAddr(c.PprofAddr); err != nil {
			r.Fail("pprof addr %q: %w", c.PprofAddr, err)
		}
	}
	if err := envconfig.CheckLogLevel(c.LogLevel); err != nil {
		r.Fail("%w", err) // -log-level may override LOG_LEVEL
	}
	if err := r.Err(); err != nil {
		return Config{}, &entry.UsageError{Err: err}
	}
	return c, nil
}

// LogValue is the configuration as it is logged at start.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("addr", c.Addr),
		slog.String("data_dir", c.DataDir),
		slog.Int("partitions", c.Partitions),
		slog.Bool("sync_writes", c.SyncWrites),
		slog.String("log_level", c.LogLevel),
		slog.Int("brokers", c.Brokers),
		slog.String("control_addr", c.ControlAddr),
		slog.String("pprof_addr", c.PprofAddr),
	)
}

// checkAddr accepts host:port with a loopback host. The broker has no
// authentication and advertises its listen address, so neither another
// interface nor an unspecified address (0.0.0.0) makes sense for it.
func checkAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("port %q is not a port number", port)
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("host %q is not a loopback address (127.0.0.1, ::1, localhost): devkafka is for one machine", host)
	}
	return nil
}
