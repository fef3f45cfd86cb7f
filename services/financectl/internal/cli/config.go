package cli

import (
	"github.com/finsvc/finance/pkg/envconfig"
	"github.com/finsvc/finance/pkg/kafka"
	"github.com/finsvc/finance/pkg/postgres"
)

// config is financectl's environment.
type config struct {
	Postgres   postgres.Config
	Kafka      envconfig.Kafka
	Partitions int
	JWTSecret  envconfig.Secret
	// DevMode lets `token` sign with the public dev secret when
	// AUTH_JWT_SECRET is unset. It is on unless FINANCE_DEV_MODE=false: a
	// token signed so is accepted only by a gateway in dev mode (make run's),
	// never by one that has a secret of its own.
	DevMode bool
	// LogLevel is the level of the Kafka client's log on stderr. A CLI's
	// stderr is for the operator, who gets each failure as one line anyway,
	// so it defaults to error, not info.
	LogLevel string
	// HTTP is the HTTP_* server settings of reconcile --metrics-addr's port.
	HTTP envconfig.HTTPServer
	// Actor is who the audit says acted (admin_audit, and dlq_replays,
	// recoveries, restores): FINANCE_ACTOR as given (e.g. "alice@example.com",
	// or "job:reconciler" for the periodic job), else "cli:<os user>". On a
	// shared account or in a container, where the OS user says nothing, set
	// it.
	Actor string
}

// defaultConfig is the configuration of an empty environment, for help
// texts that show flag defaults.
func defaultConfig() config {
	c, _ := loadConfig(func(string) string { return "" })
	return c
}

// loadConfig reads the environment through getenv and reports every problem
// at once.
func loadConfig(getenv func(string) string) (config, error) {
	r := envconfig.New(getenv)
	c := config{
		Postgres:   postgres.LoadConfig(r, postgres.Config{MaxConns: 4}),
		Kafka:      envconfig.LoadKafka(r, true),
		Partitions: r.Int("KAFKA_PARTITIONS", kafka.DefaultPartitions),
		JWTSecret:  r.Secret("AUTH_JWT_SECRET", ""),
		DevMode:    r.Bool("FINANCE_DEV_MODE", true),
		LogLevel:   r.LogLevel("error"),
		HTTP:       envconfig.LoadHTTPServer(r),
		Actor:      r.String("FINANCE_ACTOR", ""),
	}
	if c.Actor == "" {
		c.Actor = osActor()
	}
	if c.Partitions < 1 {
		r.Fail("KAFKA_PARTITIONS=%d: must be at least 1", c.Partitions)
	}
	return c, r.Err()
}
