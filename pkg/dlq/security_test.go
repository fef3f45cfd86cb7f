package dlq_test

import (
	"errors"
	"log/slog"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/finsvc/finance/pkg/dlq"
	"github.com/finsvc/finance/pkg/envconfig"
	"github.com/finsvc/finance/pkg/kafka"
	"github.com/finsvc/finance/pkg/kafkatest"
)

// On a cluster that wants SASL, the Operator's options reach both its
// clients: the one it keeps (offsets) and the one List makes to read the
// dead letters (the gateway's admin routes and financectl dlq pass
// kafka.SecurityOpts).
func TestOperatorWithSASL(t *testing.T) {
	t.Parallel()
	cluster := kafkatest.New(t, 1, append(kafka.Topics(), kafka.DLQTopics()...),
		kfake.EnableSASL(), kfake.Superuser(envconfig.SASLScramSHA512, "finance", "s3cret"))
	sec, err := kafka.SecurityOpts(envconfig.KafkaSecurity{SASLMechanism: envconfig.SASLScramSHA512, SASLUsername: "finance", SASLPassword: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.Brokers()...),
		kgo.SASL(scram.Auth{User: "finance", Pass: "s3cret"}.AsSha512Mechanism()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	rec := &kgo.Record{Topic: kafka.TopicOutcomes, Partition: 0, Offset: 7, Key: []byte("3456"), Value: []byte("v")}
	if err := dlq.Publish(ctx(t), cl, rec, dlq.Letter{Reason: "undecodable", Err: errors.New("bad"), Attempts: 1, Source: "test"}); err != nil {
		t.Fatal(err)
	}

	logger := slog.New(slog.DiscardHandler)
	op, err := dlq.NewOperator(cluster.Brokers(), nil, logger, sec...)
	if err != nil {
		t.Fatal(err)
	}
	defer op.Close()
	got, err := op.List(ctx(t), dlq.Filter{})
	if err != nil || len(got) != 1 || got[0].Reason != "undecodable" {
		t.Fatalf("List with SASL = %+v, %v; want the one dead letter", got, err)
	}
}
