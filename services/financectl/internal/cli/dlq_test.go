package cli_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/finsvc/finance/pkg/dlq"
	"github.com/finsvc/finance/pkg/kafka"
	"github.com/finsvc/finance/pkg/kafkatest"
	"github.com/finsvc/finance/pkg/pgtest"
)

// dlqEnv is a broker with three dead letters and a migrated database.
type dlqEnv struct {
	env     map[string]string
	cl      *kgo.Client
	dbURL   string
	letters []dlq.Entry // as List returns them, oldest first
}

func newDLQEnv(t *testing.T) dlqEnv {
	t.Helper()
	cluster := kafkatest.New(t, 2, append(kafka.Topics(), kafka.DLQTopics()...))
	cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.Brokers()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	d := dlqEnv{cl: cl, dbURL: pgtest.NewDB(t)}
	d.env = map[string]string{"KAFKA_BROKERS": strings.Join(cluster.Brokers(), ","), "DATABASE_URL": d.dbURL}
	for i, l := range []struct {
		topic, key, value string
		letter            dlq.Letter
	}{
		{kafka.TopicOutcomes, "7", "a", dlq.Letter{Reason: "undecodable", Err: errors.New("proto: bad wire type"), Attempts: 1}},
		{kafka.TopicOutcomes, "8", "b", dlq.Letter{Reason: "unknown_payment", Err: errors.New("payment 424242 not found"),
			Attempts: 1, PaymentID: 424242, UserID: 8}},
		{kafka.TopicRequested, "7", "c", dlq.Letter{Reason: "retry_budget_spent", Err: errors.New("processor 503"),
			Attempts: 5, PaymentID: 100001, UserID: 7}},
	} {
		rec := &kgo.Record{Topic: l.topic, Partition: 0, Offset: int64(i), Key: []byte(l.key), Value: []byte(l.value)}
		l.letter.Source = "test"
		if err := dlq.Publish(context.Background(), cl, rec, l.letter); err != nil {
			t.Fatal(err)
		}
	}
	got := run(t, d.env, "dlq", "list", "--json")
	if got.code != exitOK {
		t.Fatalf("dlq list: exit %d, stderr:\n%s", got.code, got.stderr)
	}
	if err := json.Unmarshal([]byte(got.stdout), &d.letters); err != nil || len(d.letters) != 3 {
		t.Fatalf("dlq list --json: %d letters, %v:\n%s", len(d.letters), err, got.stdout)
	}
	return d
}

func TestDLQListAndShow(t *testing.T) {
	t.Parallel()
	d := newDLQEnv(t)
	tests := []struct {
		name string
		args []string
		want []string // values of the listed letters
	}{
		{"all", nil, []string{"a", "b", "c"}},
		{"by user", []string{"--user", "7"}, []string{"a", "c"}},
		{"by payment", []string{"--payment", "424242"}, []string{"b"}},
		{"by error", []string{"--error", "Wire"}, []string{"a"}},
		{"by topic", []string{"--topic", "payments.requested"}, []string{"c"}},
		{"since an hour ago", []string{"--since", "1h"}, []string{"a", "b", "c"}},
		{"until an hour ago", []string{"--until", "1h"}, []string{}},
		{"since a time", []string{"--since", time.Now().Add(time.Hour).Format(time.RFC3339)}, []string{}},
		{"limit", []string{"--limit", "1"}, []string{"a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := run(t, d.env, append([]string{"dlq", "list", "--json"}, tt.args...)...)
			if got.code != exitOK {
				t.Fatalf("exit %d, stderr:\n%s", got.code, got.stderr)
			}
			var es []dlq.Entry
			if err := json.Unmarshal([]byte(got.stdout), &es); err != nil {
				t.Fatal(err)
			}
			values := []string{}
			for _, e := range es {
				values = append(values, string(e.Value))
			}
			if diff := cmp.Diff(tt.want, values); diff != "" {
				t.Errorf("listed (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("text", func(t *testing.T) {
		t.Parallel()
		got := run(t, d.env, "dlq", "list", "--user", "8")
		if got.code != exitOK {
			t.Fatalf("exit %d, stderr:\n%s", got.code, got.stderr)
		}
		for _, want := range []string{"DEAD LETTER", d.letters[1].ID(), "unknown_payment", "424242", "1 dead letter(s)"} {
			if !strings.Contains(got.stdout, want) {
				t.Errorf("stdout lacks %q:\n%s", want, got.stdout)
			}
		}
	})
	t.Run("show", func(t *testing.T) {
		t.Parallel()
		e := d.letters[2]
		for _, args := range [][]string{{e.ID()}, {e.Topic, fmt.Sprint(e.Partition), fmt.Sprint(e.Offset)}} {
			got := run(t, d.env, append([]string{"dlq", "show"}, args...)...)
			if got.code != exitOK {
				t.Fatalf("exit %d, stderr:\n%s", got.code, got.stderr)
			}
			for _, want := range []string{"original:        payments.requested/0/2", "reason:          retry_budget_spent",
				"attempts:        5", "payment:         100001", "error:           processor 503"} {
				if !strings.Contains(got.stdout, want) {
					t.Errorf("show %v lacks %q:\n%s", args, want, got.stdout)
				}
			}
		}
		got := run(t, d.env, "dlq", "show", e.Topic+"/0/999")
		if got.code != exitError || !strings.Contains(got.stderr, "dead letter not found") {
			t.Errorf("show of a missing letter: exit %d, stderr %q", got.code, got.stderr)
		}
	})
}

func TestDLQReplay(t *testing.T) {
	t.Parallel()
	d := newDLQEnv(t)
	originals := func() int64 {
		t.Helper()
		ends, err := kadm.NewClient(d.cl).ListEndOffsets(context.Background(), kafka.TopicOutcomes)
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
		return n
	}

	got := run(t, d.env, "dlq", "replay", "--topic", kafka.TopicOutcomes, "--dry-run")
	if got.code != exitOK {
		t.Fatalf("dry run: exit %d, stderr:\n%s", got.code, got.stderr)
	}
	if !strings.Contains(got.stdout, "(dry run: nothing published): 2 selected, 0 replayed") ||
		!strings.Contains(got.stdout, "would_replay") {
		t.Errorf("dry run stdout:\n%s", got.stdout)
	}
	if n := originals(); n != 0 {
		t.Errorf("after the dry run %s holds %d records, want 0", kafka.TopicOutcomes, n)
	}

	got = run(t, d.env, "dlq", "replay", "--topic", kafka.TopicOutcomes, "--rate", "50")
	if got.code != exitOK {
		t.Fatalf("replay: exit %d, stderr:\n%s", got.code, got.stderr)
	}
	if !strings.Contains(got.stdout, "2 selected, 2 replayed, 0 skipped") {
		t.Errorf("replay stdout:\n%s", got.stdout)
	}
	if n := originals(); n != 2 {
		t.Errorf("after the replay %s holds %d records, want 2", kafka.TopicOutcomes, n)
	}

	got = run(t, d.env, "dlq", "replay", "--topic", kafka.TopicOutcomes)
	if got.code != exitOK {
		t.Fatalf("second replay: exit %d, stderr:\n%s", got.code, got.stderr)
	}
	if !strings.Contains(got.stdout, "2 selected, 0 replayed, 2 skipped") {
		t.Errorf("second replay stdout:\n%s", got.stdout)
	}
	if n := originals(); n != 2 {
		t.Errorf("after the second replay %s holds %d records, want 2", kafka.TopicOutcomes, n)
	}

	conn, err := pgx.Connect(context.Background(), d.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	rows, _ := conn.Query(context.Background(),
		`SELECT dry_run::text || ' ' || replayed || ' ' || skipped || ' ' || (actor LIKE 'cli:%')::text FROM dlq_replays ORDER BY id`)
	audit, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"true 0 0 true", "false 2 0 true", "false 0 2 true"}, audit); diff != "" {
		t.Errorf("audit (-want +got):\n%s", diff)
	}
}

func TestDLQUsageErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"dlq"}, "missing action"},
		{[]string{"dlq", "purge"}, `unknown action "purge"`},
		{[]string{"dlq", "list", "--since", "yesterday"}, "--since"},
		{[]string{"dlq", "list", "--limit", "0"}, "--limit 0"},
		{[]string{"dlq", "list", "--topic", "nope"}, `unknown topic "nope"`},
		{[]string{"dlq", "list", "extra"}, `unexpected argument "extra"`},
		{[]string{"dlq", "show", "payments.outcomes.dlq", "x", "1"}, `partition "x"`},
		{[]string{"dlq", "show"}, "show wants"},
		{[]string{"dlq", "replay", "--rate", "0"}, "--rate 0"},
		{[]string{"dlq", "replay"}, "replay needs --topic T (one of payments.requested, payments.outcomes, payments.events, or its .dlq topic) or --all-topics"},
		{[]string{"dlq", "replay", "--dry-run", "--user", "7"}, "replay needs --topic T"},
		{[]string{"dlq", "replay", "--all-topics", "--topic", "payments.outcomes"}, "--topic payments.outcomes and --all-topics contradict"},
		{[]string{"dlq", "replay", "--topic", "payments.requested", "--key-retention", "0s"}, "--key-retention 0s must be positive"},
		{[]string{"dlq", "replay", "--topic", "payments.requested", "--key-retention", "-1h"}, "--key-retention -1h0m0s must be positive"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			t.Parallel()
			got := run(t, nil, tt.args...)
			if got.code != exitUsage {
				t.Errorf("exit %d, want %d; stderr:\n%s", got.code, exitUsage, got.stderr)
			}
			if first, _, _ := strings.Cut(got.stderr, "\n"); !strings.Contains(first, tt.want) {
				t.Errorf("first stderr line %q lacks %q", first, tt.want)
			}
		})
	}
}
