package main

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/finsvc/finance/pkg/kafka"
	"github.com/finsvc/finance/pkg/kafkatest"
	"github.com/finsvc/finance/pkg/pgtest"
	"github.com/finsvc/finance/pkg/stacktest"
	"github.com/finsvc/finance/pkg/testkit"
)

// An external cluster that requires SASL: the service reads KAFKA_SASL_*
// like every other service and becomes ready, which it cannot without
// authenticating (readiness pings the broker).
func TestReadyAgainstASASLCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the binary")
	}
	bin := stacktest.Binaries(t, "webhook-delivery")
	dbURL := pgtest.NewDB(t)
	cluster := kafkatest.New(t, 1, []string{kafka.TopicEvents, "payments.webhooks.dlq", "payments.webhooks.ops"},
		kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-256", "finance", "s3cret"))
	ops := stacktest.FreeAddr(t)

	out := &stacktest.Buffer{}
	cmd := exec.Command(filepath.Join(bin, "webhook-delivery"))
	cmd.Env = append(os.Environ(),
		"DATABASE_URL="+dbURL, "DATABASE_MAX_CONNS=2",
		"KAFKA_BROKERS="+strings.Join(cluster.Brokers(), ","),
		"KAFKA_SASL_MECHANISM=SCRAM-SHA-256", "KAFKA_SASL_USERNAME=finance", "KAFKA_SASL_PASSWORD=s3cret",
		"OPS_ADDR="+ops, "FINANCE_DEV_MODE=true")
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("service output:\n%s", out.String())
		}
	})

	testkit.Eventually(t, "ready with SASL", func() bool {
		resp, err := http.Get("http://" + ops + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}
