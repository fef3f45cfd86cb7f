package cli

import (
	"github.com/finsvc/finance/pkg/envconfig"
	"github.com/finsvc/finance/pkg/kafka"
)

// config is financectl's environment.
type config struct {
	DatabaseURL string
	Brokers     []string
	Partitions  int
	JWTSecret   envconfig.Secret
	DevMode     bool
	// LogLevel is the level of the Kafka client's log on stderr. A CLI's
	// stderr is for the operator, who gets each failure as one line anyway,
	// so it defaults to error, not info.
	LogLevel string
}

func defaultConfig() config {
	return config{
		DatabaseURL: "postgres://postgres@127.0.0.1:5432/finance?sslmode=disable",
		Brokers:     []string{"127.0.0.1:9092"},
		Partitions:  kafka.DefaultPartitions,
		LogLevel:    "error",
	}
}

// loadConfig reads the environment through getenv and reports every problem
// at once.
func loadConfig(getenv func(string) string) (config, error) {
	d := defaultConfig()
	r := envconfig.New(getenv)
	c := config{
		DatabaseURL: r.String("DATABASE_URL", d.DatabaseURL),
		Brokers:     r.List("KAFKA_BROKERS", d.Brokers),
		Partitions:  r.Int("KAFKA_PARTITIONS", d.Partitions),
		JWTSecret:   r.Secret("AUTH_JWT_SECRET", ""),
		DevMode:     r.Bool("FINANCE_DEV_MODE", false),
		LogLevel:    r.String("LOG_LEVEL", d.LogLevel),
	}
	if c.Partitions < 1 {
		r.Fail("KAFKA_PARTITIONS=%d: must be at least 1", c.Partitions)
	}
	if len(c.Brokers) == 0 {
		r.Fail("KAFKA_BROKERS: no broker address")
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		r.Fail("LOG_LEVEL=%q: want debug, info, warn or error", c.LogLevel)
	}
	return c, r.Err()
}
