// Command devkafka is the development Kafka broker of the Finance Service: a
// single-broker, Kafka-protocol server (franz-go's kfake) that persists to a
// data directory. Stop it only with SIGTERM or SIGINT; see README.md.
package main

import (
	"github.com/finsvc/finance/pkg/entry"
	"github.com/finsvc/finance/services/devkafka/internal/broker"
)

func main() { entry.Main("devkafka", broker.Run) }
