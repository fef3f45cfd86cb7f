package cli_test

import (
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/finsvc/finance/pkg/kafkatest"
)

// The Helm chart's hook job creates the topics on an external cluster with
// SASL: topics create reads KAFKA_SASL_* and authenticates; without the
// credentials the cluster refuses it and it fails.
func TestTopicsCreateWithSASL(t *testing.T) {
	t.Parallel()
	cluster := kafkatest.New(t, 1, nil, kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-256", "finance", "s3cret"))
	env := map[string]string{
		"KAFKA_BROKERS":        strings.Join(cluster.Brokers(), ","),
		"KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
		"KAFKA_SASL_USERNAME":  "finance",
		"KAFKA_SASL_PASSWORD":  "s3cret",
	}
	got := run(t, env, "topics", "create", "--partitions", "2")
	if got.code != exitOK || !strings.Contains(got.stdout, "topic payments.requested: 2 partitions") {
		t.Fatalf("create with SASL: exit %d, stdout %q, stderr:\n%s", got.code, got.stdout, got.stderr)
	}

	env["KAFKA_SASL_PASSWORD"] = "wrong"
	if got := run(t, env, "topics", "list", "--timeout", "3s"); got.code == exitOK {
		t.Errorf("list with a wrong password: exit 0, stdout %q", got.stdout)
	}
}
