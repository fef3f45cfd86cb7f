package cli

import (
	"context"
	"flag"
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/finsvc/finance/pkg/kafka"
	"github.com/finsvc/finance/pkg/obs"
)

func topicsCommand() *command {
	var (
		partitions int
		timeout    time.Duration
	)
	return &command{
		name: "topics",
		args: "create [--partitions P] [--timeout D] | list [--timeout D]",
		summary: "create the pipeline topics (" + strings.Join(kafka.Topics(), ", ") + ") and their dead-letter topics (" +
			strings.Join(kafka.DLQTopics(), ", ") + ") on KAFKA_BROKERS unless they exist, or list the broker's topics",
		flags: func(e *env) *flag.FlagSet {
			fs := newFlagSet("topics")
			fs.IntVar(&partitions, "partitions", e.cfg.Partitions, "partitions of each created topic (default from KAFKA_PARTITIONS)")
			fs.DurationVar(&timeout, "timeout", 30*time.Second, "give up when the brokers do not answer within this time")
			return fs
		},
		run: func(ctx context.Context, e *env, fs *flag.FlagSet) error {
			if fs.NArg() == 0 {
				return usagef("missing action: want create or list")
			}
			action := fs.Arg(0)
			// Flags may also follow the action: topics create --partitions 3.
			if err := fs.Parse(fs.Args()[1:]); err != nil {
				return usagef("%v", err)
			}
			if err := noArgs(fs); err != nil {
				return err
			}
			if action != "create" && action != "list" {
				return usagef("unknown action %q: want create or list", action)
			}
			if partitions < 1 {
				return usagef("--partitions %d must be at least 1", partitions)
			}
			if timeout <= 0 {
				return usagef("--timeout %s must be positive", timeout)
			}
			logger, err := obs.NewLogger(e.stderr, e.cfg.LogLevel, "financectl")
			if err != nil {
				return usagef("%v", err)
			}
			sec, err := kafka.SecurityOpts(e.cfg.Kafka.Security)
			if err != nil {
				return err
			}
			cl, err := kafka.NewClient(e.cfg.Kafka.Brokers, logger, append(sec, kgo.RetryTimeout(timeout))...)
			if err != nil {
				return err
			}
			defer cl.Close()
			ctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			if action == "create" {
				return createTopics(ctx, e, cl, int32(partitions))
			}
			return listTopics(ctx, e, cl)
		},
	}
}

// pipelineTopics are the topics topics create makes: the pipeline's and
// their dead-letter topics.
func pipelineTopics() []string {
	return append(kafka.Topics(), kafka.DLQTopics()...)
}

func createTopics(ctx context.Context, e *env, cl *kgo.Client, partitions int32) error {
	topics := pipelineTopics()
	if err := kafka.EnsureTopics(ctx, cl, partitions, topics...); err != nil {
		return fmt.Errorf("on %v: %w", e.cfg.Kafka.Brokers, err)
	}
	details, err := kadm.NewClient(cl).ListTopics(ctx, topics...)
	if err != nil {
		return fmt.Errorf("on %v: %w", e.cfg.Kafka.Brokers, err)
	}
	for _, t := range topics {
		d := details[t]
		if d.Err != nil {
			return fmt.Errorf("topic %s: %w", t, d.Err)
		}
		n := len(d.Partitions)
		note := ""
		if n != int(partitions) {
			note = fmt.Sprintf(" (exists with %d, not %d: partitions are never changed here)", n, partitions)
		}
		fmt.Fprintf(e.stdout, "topic %s: %d partitions%s\n", t, n, note)
	}
	return nil
}

func listTopics(ctx context.Context, e *env, cl *kgo.Client) error {
	details, err := kadm.NewClient(cl).ListTopics(ctx)
	if err != nil {
		return fmt.Errorf("list topics on %v: %w", e.cfg.Kafka.Brokers, err)
	}
	if err := details.Error(); err != nil {
		return fmt.Errorf("list topics on %v: %w", e.cfg.Kafka.Brokers, err)
	}
	names := details.Names()
	sort.Strings(names)
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TOPIC\tPARTITIONS\tREPLICAS")
	for _, n := range names {
		d := details[n]
		fmt.Fprintf(tw, "%s\t%d\t%d\n", n, len(d.Partitions), d.Partitions.NumReplicas())
	}
	return tw.Flush()
}
