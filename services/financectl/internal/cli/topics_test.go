package cli_test

import (
	"context"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/finsvc/finance/pkg/kafka"
	"github.com/finsvc/finance/pkg/kafkatest"
	"github.com/finsvc/finance/pkg/stacktest"
)

func TestTopicsCreateAndList(t *testing.T) {
	t.Parallel()
	cluster := kafkatest.New(t, 1, nil)
	env := map[string]string{"KAFKA_BROKERS": strings.Join(cluster.Brokers(), ",")}

	got := run(t, env, "topics", "create", "--partitions", "3")
	if got.code != exitOK {
		t.Fatalf("create: exit %d, stderr:\n%s", got.code, got.stderr)
	}
	want := "topic payments.requested: 3 partitions\ntopic payments.outcomes: 3 partitions\ntopic payments.events: 3 partitions\n" +
		"topic payments.requested.dlq: 3 partitions\ntopic payments.outcomes.dlq: 3 partitions\ntopic payments.events.dlq: 3 partitions\n"
	if got.stdout != want {
		t.Errorf("create stdout = %q, want %q", got.stdout, want)
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.Brokers()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	all := append(kafka.Topics(), kafka.DLQTopics()...)
	details, err := kadm.NewClient(cl).ListTopics(context.Background(), all...)
	if err != nil {
		t.Fatal(err)
	}
	for _, topic := range all {
		if d := details[topic]; d.Err != nil || len(d.Partitions) != 3 {
			t.Errorf("topic %s: %d partitions, err %v; want 3", topic, len(d.Partitions), d.Err)
		}
	}

	// Again, with another count and the count from KAFKA_PARTITIONS: a no-op
	// that says so.
	env["KAFKA_PARTITIONS"] = "5"
	got = run(t, env, "topics", "create")
	if got.code != exitOK {
		t.Fatalf("second create: exit %d, stderr:\n%s", got.code, got.stderr)
	}
	if !strings.Contains(got.stdout, "topic payments.events: 3 partitions (exists with 3, not 5") {
		t.Errorf("second create stdout = %q", got.stdout)
	}

	got = run(t, env, "topics", "list")
	if got.code != exitOK {
		t.Fatalf("list: exit %d, stderr:\n%s", got.code, got.stderr)
	}
	for _, topic := range kafka.Topics() {
		if !strings.Contains(got.stdout, topic+"  ") {
			t.Errorf("list stdout lacks %s:\n%s", topic, got.stdout)
		}
	}
}

func TestTopicsUnreachableBrokerExit1(t *testing.T) {
	t.Parallel()
	addr := stacktest.FreeAddr(t) // nothing listens there now
	got := run(t, map[string]string{"KAFKA_BROKERS": addr}, "topics", "create", "--timeout", "2s")
	if got.code != exitError {
		t.Errorf("exit %d, want %d; stderr:\n%s", got.code, exitError, got.stderr)
	}
	if !strings.Contains(got.stderr, "financectl: topics: on ["+addr+"]") {
		t.Errorf("stderr = %q, want the broker address", got.stderr)
	}
}
