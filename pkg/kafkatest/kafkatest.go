// Package kafkatest starts an in-process Kafka-protocol cluster (kfake) on a
// random loopback port for a test. Clients reach it over TCP like any broker.
package kafkatest

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Cluster is a running test cluster.
type Cluster struct {
	*kfake.Cluster
}

// Brokers returns the seed addresses of the cluster.
func (c *Cluster) Brokers() []string { return c.ListenAddrs() }

// New starts a one-broker cluster with the given topics created with
// partitions partitions, closed when tb ends. Extra kfake options (more
// brokers, fault injection setup) may be passed.
func New(tb testing.TB, partitions int32, topics []string, opts ...kfake.Opt) *Cluster {
	tb.Helper()
	base := []kfake.Opt{kfake.NumBrokers(1)}
	if len(topics) > 0 {
		base = append(base, kfake.SeedTopics(partitions, topics...))
	}
	c, err := kfake.NewCluster(append(base, opts...)...)
	if err != nil {
		tb.Fatalf("kafkatest: start cluster: %v", err)
	}
	tb.Cleanup(c.Close)
	return &Cluster{Cluster: c}
}
