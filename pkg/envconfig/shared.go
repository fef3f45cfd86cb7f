package envconfig

import (
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// DefaultKafkaBrokers is where `make run` starts its broker.
var DefaultKafkaBrokers = []string{"127.0.0.1:9092"}

// LogLevels is what LOG_LEVEL accepts.
const LogLevels = "debug, info, warn or error"

// CheckLogLevel reports whether level is one of LogLevels. Flags that set the
// level (devkafka -log-level) check it here too.
func CheckLogLevel(level string) error {
	switch level {
	case "debug", "info", "warn", "error":
		return nil
	}
	return fmt.Errorf("log level %q: want %s", level, LogLevels)
}

// LogLevel returns LOG_LEVEL in lower case, or def, recording an error when it
// is not one of LogLevels.
func (r *Reader) LogLevel(def string) string {
	level := strings.ToLower(r.String("LOG_LEVEL", def))
	if err := CheckLogLevel(level); err != nil {
		r.Fail("LOG_LEVEL=%q: want %s", level, LogLevels)
	}
	return level
}

// Kafka is the broker settings of every service that uses Kafka.
type Kafka struct {
	Brokers []string // KAFKA_BROKERS: comma-separated host:port list
	// Security is SASL and TLS to an external cluster (KAFKA_SASL_*,
	// KAFKA_TLS_*; kafkasecurity.go); zero: plaintext, as devkafka speaks.
	Security KafkaSecurity
}

// LoadKafka reads KAFKA_BROKERS. A required setting defaults to
// DefaultKafkaBrokers; an optional one (the gateway's admin routes) to none.
func LoadKafka(r *Reader, required bool) Kafka {
	var def []string
	if required {
		def = DefaultKafkaBrokers
	}
	k := Kafka{Brokers: r.List("KAFKA_BROKERS", def), Security: LoadKafkaSecurity(r)}
	if required && len(k.Brokers) == 0 {
		r.Fail("KAFKA_BROKERS: want at least one broker")
	}
	return k
}

// LogValue logs the broker list.
func (k Kafka) LogValue() slog.Value {
	return slog.GroupValue(slog.String("brokers", strings.Join(k.Brokers, ",")), slog.Any("security", k.Security))
}

// Ops is the operational settings every long-running service has.
type Ops struct {
	LogLevel string // LOG_LEVEL
	// Addr is OPS_ADDR, where /healthz, /readyz and /metrics are served.
	// Empty: the service serves them on its main HTTP listener.
	Addr string
	// ShutdownTimeout (SHUTDOWN_TIMEOUT, formerly SHUTDOWN_GRACE) bounds the
	// graceful stop after SIGTERM.
	ShutdownTimeout time.Duration
	// HTTP is the timeouts and header cap of the service's HTTP servers
	// (HTTP_READ_HEADER_TIMEOUT, HTTP_READ_TIMEOUT, HTTP_WRITE_TIMEOUT,
	// HTTP_IDLE_TIMEOUT, HTTP_MAX_HEADER_BYTES); see HTTPServer.
	HTTP HTTPServer
	// Deprecated lists the deprecated setting names the environment uses;
	// obs.Start warns about each.
	Deprecated []string
}

// LoadOps reads LOG_LEVEL, OPS_ADDR and SHUTDOWN_TIMEOUT with def's values
// as defaults, and the HTTP_* server settings (LoadHTTPServer). A service without an ops listener of its own passes an empty
// def.Addr, and OPS_ADDR is not read. Call it last in loadConfig: it
// collects the deprecated names read so far.
func LoadOps(r *Reader, def Ops) Ops {
	r.Rename("SHUTDOWN_GRACE", "SHUTDOWN_TIMEOUT")
	o := Ops{
		LogLevel:        r.LogLevel(def.LogLevel),
		ShutdownTimeout: r.PositiveDuration("SHUTDOWN_TIMEOUT", def.ShutdownTimeout),
		HTTP:            LoadHTTPServer(r),
	}
	if def.Addr != "" {
		o.Addr = r.String("OPS_ADDR", def.Addr)
	}
	o.Deprecated = r.Deprecated()
	return o
}

// LogValue logs the settings.
func (o Ops) LogValue() slog.Value {
	addr := o.Addr
	if addr == "" {
		addr = "(the HTTP listener)"
	}
	return slog.GroupValue(
		slog.String("log_level", o.LogLevel),
		slog.String("ops_addr", addr),
		slog.String("shutdown_timeout", o.ShutdownTimeout.String()),
		slog.Any("http", o.HTTP),
	)
}
