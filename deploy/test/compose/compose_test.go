// Package compose_test checks deploy/compose/compose.yaml without Docker:
// it parses the file and checks that the three Kafka brokers form one KRaft
// quorum, that every service of the pipeline is there, built from the one
// Dockerfile with its SERVICE, and has the settings it needs, and that the
// Dockerfile builds every service the chart and compose name, as non-root
// from bases pinned by digest. Nothing here starts a container: no Docker
// engine runs where `make test` runs.
package compose_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// root returns the repository's root.
func root(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOWORK").Output()
	r := filepath.Dir(strings.TrimSpace(string(out)))
	if err != nil || r == "." {
		t.Fatalf("find the repository root through go env GOWORK: %v", err)
	}
	return r
}

type service struct {
	Image       string            `json:"image"`
	Build       *build            `json:"build"`
	Command     []string          `json:"command"`
	Environment map[string]string `json:"environment"`
	DependsOn   map[string]struct {
		Condition string `json:"condition"`
	} `json:"depends_on"`
	User     string   `json:"user"`
	ReadOnly bool     `json:"read_only"`
	CapDrop  []string `json:"cap_drop"`
	Profiles []string `json:"profiles"`
}

type build struct {
	Context    string            `json:"context"`
	Dockerfile string            `json:"dockerfile"`
	Args       map[string]string `json:"args"`
}

// setup parses the compose file (YAML anchors and merge keys resolved).
func setup(t *testing.T) (string, map[string]service) {
	t.Helper()
	r := root(t)
	b, err := os.ReadFile(filepath.Join(r, "deploy", "compose", "compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Services map[string]service `json:"services"`
		Volumes  map[string]any     `json:"volumes"`
	}
	// Keys this test does not look at (ports, volumes, healthcheck) are
	// ignored.
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("compose.yaml does not parse: %v", err)
	}
	if len(f.Services) == 0 {
		t.Fatal("compose.yaml has no services")
	}
	return r, f.Services
}

func TestComposeKafkaIsOneKRaftQuorumOfThree(t *testing.T) {
	t.Parallel()
	_, svcs := setup(t)
	brokers := []string{"kafka-1", "kafka-2", "kafka-3"}
	ids := map[string]bool{}
	clusterIDs := map[string]bool{}
	for i, name := range brokers {
		s, ok := svcs[name]
		if !ok {
			t.Fatalf("no service %s", name)
		}
		env := s.Environment
		if !strings.HasPrefix(s.Image, "apache/kafka:") {
			t.Errorf("%s: image %q, want Apache Kafka (apache/kafka)", name, s.Image)
		}
		if env["KAFKA_PROCESS_ROLES"] != "broker,controller" {
			t.Errorf("%s: KAFKA_PROCESS_ROLES=%q, want broker,controller (KRaft)", name, env["KAFKA_PROCESS_ROLES"])
		}
		if want := "1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093"; env["KAFKA_CONTROLLER_QUORUM_VOTERS"] != want {
			t.Errorf("%s: voters %q, want %q", name, env["KAFKA_CONTROLLER_QUORUM_VOTERS"], want)
		}
		if env["KAFKA_NODE_ID"] != fmt.Sprint(i+1) {
			t.Errorf("%s: KAFKA_NODE_ID=%q, want %d", name, env["KAFKA_NODE_ID"], i+1)
		}
		ids[env["KAFKA_NODE_ID"]] = true
		clusterIDs[env["CLUSTER_ID"]] = true
		if want := "PLAINTEXT://" + name + ":9092"; env["KAFKA_ADVERTISED_LISTENERS"] != want {
			t.Errorf("%s: advertised %q, want %q", name, env["KAFKA_ADVERTISED_LISTENERS"], want)
		}
		for _, k := range []string{"KAFKA_DEFAULT_REPLICATION_FACTOR", "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"} {
			if env[k] != "3" {
				t.Errorf("%s: %s=%q, want 3", name, k, env[k])
			}
		}
		if env["KAFKA_MIN_INSYNC_REPLICAS"] != "2" || env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] != "2" {
			t.Errorf("%s: min in-sync replicas not 2", name)
		}
	}
	if len(ids) != 3 || len(clusterIDs) != 1 {
		t.Errorf("node ids %v (want 3 distinct), cluster ids %v (want one)", ids, clusterIDs)
	}
	if pg := svcs["postgres"]; !strings.HasPrefix(pg.Image, "postgres:") || pg.Environment["POSTGRES_DB"] != "finance" {
		t.Errorf("postgres: image %q, database %q", pg.Image, pg.Environment["POSTGRES_DB"])
	}
}

func TestComposeRunsEveryServiceWithItsSettings(t *testing.T) {
	t.Parallel()
	r, svcs := setup(t)
	// What each of our services needs set (beyond its defaults) to reach the
	// compose network's data stores and peers.
	needs := map[string][]string{
		"migrate":          {"DATABASE_URL"},
		"topics":           {"KAFKA_BROKERS", "KAFKA_PARTITIONS"},
		"seed":             {"DATABASE_URL"},
		"gateway":          {"DATABASE_URL", "KAFKA_BROKERS", "HTTP_ADDR", "FINANCE_DEV_MODE"},
		"outbox-relay":     {"DATABASE_URL", "KAFKA_BROKERS", "OPS_ADDR"},
		"dispatcher":       {"DATABASE_URL", "KAFKA_BROKERS", "OPS_ADDR", "PROCESSOR_URL", "PROCESSOR_API", "PROCESSOR_RATE_LIMIT"},
		"status-consumer":  {"DATABASE_URL", "KAFKA_BROKERS", "OPS_ADDR"},
		"reconciler":       {"DATABASE_URL"},
		"processor-sim":    {"HTTP_ADDR", "SIM_API", "SIM_RATE_LIMIT"},
		"webhook-delivery": {"DATABASE_URL", "KAFKA_BROKERS", "OPS_ADDR"},
	}
	var names []string
	for n := range needs {
		names = append(names, n)
	}
	sort.Strings(names)
	built := map[string]bool{}
	for _, name := range names {
		s, ok := svcs[name]
		if !ok {
			t.Errorf("no service %s", name)
			continue
		}
		for _, k := range needs[name] {
			if s.Environment[k] == "" {
				t.Errorf("%s: %s is not set", name, k)
			}
		}
		if b := s.Environment["KAFKA_BROKERS"]; b != "" && b != "kafka-1:9092,kafka-2:9092,kafka-3:9092" {
			t.Errorf("%s: KAFKA_BROKERS=%q, want all three brokers", name, b)
		}
		if u := s.Environment["DATABASE_URL"]; u != "" && !strings.Contains(u, "@postgres:5432/finance") {
			t.Errorf("%s: DATABASE_URL=%q, want the postgres service", name, u)
		}
		// Least privilege: a service connects as its own role (migrations
		// 00012 and 00015), financectl's one-shots as the owner.
		user := "finance"
		if role, ok := serviceRoles[name]; ok {
			user = role
		}
		if u := s.Environment["DATABASE_URL"]; u != "" && !strings.HasPrefix(u, "postgres://"+user+":") {
			t.Errorf("%s: DATABASE_URL=%q, want the user %s", name, u, user)
		}
		if s.User != "65532:65532" || !s.ReadOnly || !slices.Contains(s.CapDrop, "ALL") {
			t.Errorf("%s: user %q, read_only %t, cap_drop %v: want non-root, read-only, ALL dropped", name, s.User, s.ReadOnly, s.CapDrop)
		}
		if s.Build != nil {
			if s.Build.Dockerfile != "deploy/docker/Dockerfile" || s.Build.Context != "../.." {
				t.Errorf("%s: build %+v, want deploy/docker/Dockerfile from the repository root", name, *s.Build)
			}
			svc := s.Build.Args["SERVICE"]
			if !strings.HasPrefix(s.Image, "finance/"+svc+":") {
				t.Errorf("%s: image %q is not finance/%s", name, s.Image, svc)
			}
			built[svc] = true
			if _, err := os.Stat(filepath.Join(r, "services", svc, "main.go")); err != nil && len(s.Profiles) == 0 {
				t.Errorf("%s: builds services/%s, which has no main.go", name, svc)
			}
		}
		// Everything of ours but the schema job waits for the schema and the
		// topics.
		if name != "migrate" && name != "topics" && name != "processor-sim" {
			if s.DependsOn["migrate"].Condition != "service_completed_successfully" || s.DependsOn["topics"].Condition != "service_completed_successfully" {
				t.Errorf("%s: does not wait for migrate and topics", name)
			}
		}
	}
	// Every image a service uses is built by some service of the file.
	for _, name := range names {
		img := svcs[name].Image
		svc := strings.TrimPrefix(strings.SplitN(img, ":", 2)[0], "finance/")
		if strings.HasPrefix(img, "finance/") && !built[svc] {
			t.Errorf("%s: image %s is built by no service", name, img)
		}
	}
	if got := svcs["dispatcher"].DependsOn["processor-sim"].Condition; got == "" {
		t.Error("dispatcher does not wait for the processor simulator")
	}
	// The roles' passwords are set after the migration made the roles,
	// and before the services connect with them.
	roles := svcs["roles"]
	if roles.DependsOn["migrate"].Condition != "service_completed_successfully" {
		t.Error("roles does not wait for migrate")
	}
	for name := range serviceRoles {
		if svcs[name].DependsOn["roles"].Condition != "service_completed_successfully" {
			t.Errorf("%s does not wait for roles", name)
		}
		if !strings.Contains(strings.Join(roles.Command, " "), "ALTER ROLE "+serviceRoles[name]+" PASSWORD") {
			t.Errorf("roles does not set %s's password", serviceRoles[name])
		}
	}
}

// serviceRoles is each service's PostgreSQL role (migrations 00012 and
// 00015).
var serviceRoles = map[string]string{
	"gateway":          "finance_gateway",
	"outbox-relay":     "finance_outbox_relay",
	"dispatcher":       "finance_dispatcher",
	"status-consumer":  "finance_status_consumer",
	"webhook-delivery": "finance_webhook_delivery",
	"reconciler":       "finance_reconciler",
}

// The Dockerfile pins both base images by digest, runs as the non-root
// user, builds any services/<SERVICE>, and caches modules apart from
// sources. The Makefile's image list and the chart's images name services
// that exist.
func TestDockerfile(t *testing.T) {
	t.Parallel()
	r := root(t)
	b, err := os.ReadFile(filepath.Join(r, "deploy", "docker", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	pinned := regexp.MustCompile(`(?m)^ARG (GO_IMAGE|RUNTIME_IMAGE)=\S+:\S+@sha256:[0-9a-f]{64}$`)
	if n := len(pinned.FindAllString(df, -1)); n != 2 {
		t.Errorf("%d base images pinned by digest, want 2 (GO_IMAGE, RUNTIME_IMAGE)", n)
	}
	for _, want := range []string{
		"gcr.io/distroless/static-debian12:nonroot@",
		"\nUSER 65532:65532\n",
		"--mount=type=cache,target=/go/pkg/mod",
		"go mod download",
		`"./services/${SERVICE}"`,
		"CGO_ENABLED=0",
	} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	// go mod download comes before the sources are copied.
	if strings.Index(df, "go mod download") > strings.LastIndex(df, "COPY . .") {
		t.Error("go mod download runs after the sources are copied: every source change would download again")
	}
	mk, err := os.ReadFile(filepath.Join(r, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^IMAGE_SERVICES\s*:=\s*(.*)$`).FindSubmatch(mk)
	if m == nil {
		t.Fatal("Makefile has no IMAGE_SERVICES")
	}
	for _, s := range strings.Fields(string(m[1])) {
		if strings.HasPrefix(s, "$(") {
			continue
		}
		if _, err := os.Stat(filepath.Join(r, "services", s, "main.go")); err != nil {
			t.Errorf("IMAGE_SERVICES names %s: %v", s, err)
		}
	}
}
