//go:build docker

package main_test

// The end-to-end and crash tests against real Apache Kafka (one KRaft
// broker) and PostgreSQL in containers, through testcontainers-go: the same
// bodies as e2e_test.go and crash_test.go, with devstack told to use the
// containers (DATABASE_URL, KAFKA_BROKERS) instead of starting devkafka.
// Build tag docker; `make test-docker` runs them. Each first asks the
// container provider for its health and skips, saying why, where no Docker
// engine answers.

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/wait"

	"github.com/finsvc/finance/pkg/stacktest"
)

// Pinned images of the data stores: Apache Kafka's own image (KRaft, no
// ZooKeeper) and PostgreSQL, as deploy/compose uses them.
const (
	kafkaImage    = "apache/kafka:4.1.0"
	postgresImage = "postgres:17"
)

// postgresPassword is the container's password: distinct from every name
// in the run, so that the end-to-end test's search of the logs for it
// (secretsNeverLogged) means something.
const postgresPassword = "docker-e2e-pg-Pa55word"

// requireDocker skips the test, with the provider's own reason, unless a
// container engine answers.
func requireDocker(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	reason := func() (reason string) {
		defer func() {
			if r := recover(); r != nil {
				reason = fmt.Sprint(r)
			}
		}()
		p, err := testcontainers.ProviderDocker.GetProvider()
		if err != nil {
			return err.Error()
		}
		defer p.Close()
		if err := p.Health(ctx); err != nil {
			return err.Error()
		}
		return ""
	}()
	if reason != "" {
		t.Skipf("no Docker engine answers, so the real Kafka and PostgreSQL containers cannot start: %s", reason)
	}
}

// startPostgres starts PostgreSQL and returns its URL.
func startPostgres(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	c, err := testcontainers.Run(ctx, postgresImage,
		testcontainers.WithEnv(map[string]string{
			"POSTGRES_USER": "finance", "POSTGRES_PASSWORD": postgresPassword, "POSTGRES_DB": "finance",
			// The services connect as their own roles (migration 00012),
			// which have no password: trusted here, as on a developer's
			// server (docs/security.md, "Least privilege").
			"POSTGRES_HOST_AUTH_METHOD": "trust",
		}),
		testcontainers.WithExposedPorts("5432/tcp"),
		testcontainers.WithWaitStrategy(
			// The image's entrypoint starts the server twice (init, then for
			// real).
			wait.ForLog("database system is ready to accept connections").WithOccurrence(2),
			wait.ForListeningPort("5432/tcp"),
		),
	)
	testcontainers.CleanupContainer(t, c)
	if err != nil {
		t.Fatalf("start %s: %v", postgresImage, err)
	}
	host, err := c.Host(ctx)
	if err != nil {
		t.Fatal(err)
	}
	port, err := c.MappedPort(ctx, "5432/tcp")
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("postgres://finance:%s@%s:%s/finance?sslmode=disable", postgresPassword, host, port.Port())
}

// startKafka starts one Apache Kafka node in KRaft mode (broker and
// controller) and returns its bootstrap address. The broker must advertise
// the port Docker mapped, known only once the container runs: the
// container waits for a start script that a post-start hook writes with
// that port, as testcontainers' own Kafka module does.
func startKafka(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	const script = "/tmp/finance-start-kafka.sh"
	c, err := testcontainers.Run(ctx, kafkaImage,
		testcontainers.WithExposedPorts("9092/tcp"),
		testcontainers.WithEnv(map[string]string{
			"KAFKA_NODE_ID":                                  "1",
			"KAFKA_PROCESS_ROLES":                            "broker,controller",
			"KAFKA_LISTENERS":                                "PLAINTEXT://:9092,BROKER://:9093,CONTROLLER://:9094",
			"KAFKA_LISTENER_SECURITY_PROTOCOL_MAP":           "PLAINTEXT:PLAINTEXT,BROKER:PLAINTEXT,CONTROLLER:PLAINTEXT",
			"KAFKA_INTER_BROKER_LISTENER_NAME":               "BROKER",
			"KAFKA_CONTROLLER_LISTENER_NAMES":                "CONTROLLER",
			"KAFKA_CONTROLLER_QUORUM_VOTERS":                 "1@localhost:9094",
			"KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR":         "1",
			"KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
			"KAFKA_TRANSACTION_STATE_LOG_MIN_ISR":            "1",
			"KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS":         "0",
			"KAFKA_AUTO_CREATE_TOPICS_ENABLE":                "false",
		}),
		testcontainers.WithEntrypoint("sh"),
		testcontainers.WithCmd("-c", "while [ ! -f "+script+" ]; do sleep 0.1; done; exec sh "+script),
		testcontainers.WithLifecycleHooks(testcontainers.ContainerLifecycleHooks{
			PostStarts: []testcontainers.ContainerHook{func(ctx context.Context, c testcontainers.Container) error {
				host, err := c.Host(ctx)
				if err != nil {
					return err
				}
				port, err := c.MappedPort(ctx, "9092/tcp")
				if err != nil {
					return err
				}
				start := fmt.Sprintf("export KAFKA_ADVERTISED_LISTENERS=PLAINTEXT://%s:%s,BROKER://localhost:9093\nexec /etc/kafka/docker/run\n", host, port.Port())
				return c.CopyToContainer(ctx, []byte(start), script, 0o755)
			}},
		}),
		testcontainers.WithWaitStrategy(wait.ForLog("Kafka Server started").WithStartupTimeout(2*time.Minute)),
	)
	testcontainers.CleanupContainer(t, c)
	if err != nil {
		t.Fatalf("start %s: %v", kafkaImage, err)
	}
	host, err := c.Host(ctx)
	if err != nil {
		t.Fatal(err)
	}
	port, err := c.MappedPort(ctx, "9092/tcp")
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%s:%s", host, port.Port())
}

// dockerEnv is devstackEnv with the containers in place of the test
// database and devkafka.
func dockerEnv(t *testing.T) map[string]string {
	t.Helper()
	requireDocker(t)
	env := devstackEnv(t, stacktest.Binaries(t, services...))
	env["DATABASE_URL"] = startPostgres(t)
	env["KAFKA_BROKERS"] = startKafka(t)
	delete(env, "KAFKA_ADDR")
	return env
}

// The end-to-end test (e2e_test.go) against real Apache Kafka and
// PostgreSQL: a payment from POST to succeeded and into the feed, executed
// once, and a clean stop.
func TestDockerEndToEndPaymentReachesFeed(t *testing.T) {
	endToEndPaymentReachesFeed(t, dockerEnv(t))
}

// The crash test (crash_test.go) against real Apache Kafka and PostgreSQL:
// every service SIGKILLed mid-traffic, then no payment lost or paid twice,
// balances right, every payment final. Broker faults are devkafka's only,
// so they are not injected here.
func TestDockerCrashEveryServiceKeepsTheMoneyRight(t *testing.T) {
	env := dockerEnv(t)
	crashEveryServiceMidTraffic(t, map[string]string{
		"STATE_DIR":        env["STATE_DIR"],
		"BIN_DIR":          env["BIN_DIR"],
		"DATABASE_URL":     env["DATABASE_URL"],
		"KAFKA_BROKERS":    env["KAFKA_BROKERS"],
		"KAFKA_PARTITIONS": "4",
	})
}
