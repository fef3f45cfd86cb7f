package broker_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/finsvc/finance/pkg/entry"
	"github.com/finsvc/finance/pkg/kafka"
	"github.com/finsvc/finance/pkg/stacktest"
	"github.com/finsvc/finance/services/devkafka/internal/broker"
)

// waitLimit bounds how long a test waits for the broker; it detects a hang,
// it asserts no speed.
const waitLimit = 30 * time.Second

// instance is one running devkafka.
type instance struct {
	addr   string
	cancel context.CancelFunc
	done   chan error
	logs   *logLines
}

// start runs devkafka with env until stop or the end of the test, and waits
// for its "listening" line.
func start(t *testing.T, env map[string]string, args ...string) *instance {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logs := newLogLines()
	in := &instance{cancel: cancel, done: make(chan error, 1), logs: logs}
	go func() {
		in.done <- broker.Run(ctx, args, func(k string) string { return env[k] }, logs, io.Discard)
		logs.Close()
	}()
	t.Cleanup(func() { in.stop(t) })
	line, ok := logs.waitFor("listening")
	if !ok {
		cancel()
		t.Fatalf("devkafka did not log listening; exit: %v", <-in.done)
	}
	in.addr, _ = line["addr"].(string)
	if in.addr == "" {
		t.Fatalf("listening line without addr: %v", line)
	}
	return in
}

// stop ends the instance as SIGTERM would and checks it stopped gracefully.
func (in *instance) stop(t *testing.T) {
	t.Helper()
	if in.cancel == nil {
		return
	}
	in.cancel()
	in.cancel = nil
	select {
	case err := <-in.done:
		if err != nil {
			t.Errorf("Run returned %v, want nil after a graceful stop", err)
		}
	case <-time.After(waitLimit):
		t.Fatal("devkafka did not stop")
	}
	if _, ok := in.logs.waitFor("stopped gracefully: state saved"); !ok {
		t.Error("no 'stopped gracefully' log line")
	}
}

func client(t *testing.T, addr string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// consume reads topic from the start until it has want records.
func consume(t *testing.T, addr, topic string, want int, opts ...kgo.Opt) []string {
	t.Helper()
	cl := client(t, addr, append([]kgo.Opt{
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	}, opts...)...)
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	var got []string
	for len(got) < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %v from %s, want %d records", got, topic, want)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Logf("fetch %s/%d: %v", topic, p, err) })
		fs.EachRecord(func(r *kgo.Record) { got = append(got, string(r.Key)+"="+string(r.Value)) })
	}
	return got
}

func TestRestartKeepsTopicsRecordsAndOffsets(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"DEVKAFKA_ADDR":       stacktest.FreeAddr(t),
		"DEVKAFKA_DATA_DIR":   t.TempDir() + "/kafka", // created by devkafka
		"DEVKAFKA_PARTITIONS": "3",
	}
	ctx := context.Background()

	first := start(t, env)
	if _, ok := first.logs.waitFor("fresh data dir: created the pipeline topics"); !ok {
		t.Error("first start did not report a fresh data dir")
	}
	if first.addr != env["DEVKAFKA_ADDR"] {
		t.Errorf("listening on %s, want %s", first.addr, env["DEVKAFKA_ADDR"])
	}
	prod := client(t, first.addr)
	if err := prod.ProduceSync(ctx, &kgo.Record{Topic: kafka.TopicRequested, Key: kafka.UserKey(3456), Value: []byte("hello")}).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
	// A group consumes it and commits, so the offset must survive too.
	group := client(t, first.addr, kgo.ConsumerGroup("restart-test"), kgo.ConsumeTopics(kafka.TopicRequested),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit())
	pctx, cancel := context.WithTimeout(ctx, waitLimit)
	defer cancel()
	var n int
	for n == 0 && pctx.Err() == nil {
		n = group.PollFetches(pctx).NumRecords()
	}
	if err := group.CommitUncommittedOffsets(pctx); err != nil {
		t.Fatalf("commit: %v", err)
	}
	group.Close()
	prod.Close()
	first.stop(t)

	second := start(t, env)
	if _, ok := second.logs.waitFor("restored state from the data dir"); !ok {
		t.Error("second start did not report restored state")
	}
	got := consume(t, second.addr, kafka.TopicRequested, 1)
	if diff := cmp.Diff([]string{"3456=hello"}, got); diff != "" {
		t.Errorf("records after restart (-want +got):\n%s", diff)
	}

	adm := kadm.NewClient(client(t, second.addr))
	topics, err := adm.ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, topic := range kafka.Topics() {
		if d, ok := topics[topic]; !ok || len(d.Partitions) != 3 {
			t.Errorf("topic %s after restart: present %v, %d partitions; want 3", topic, ok, len(d.Partitions))
		}
	}
	offsets, err := adm.FetchOffsets(ctx, "restart-test")
	if err != nil {
		t.Fatal(err)
	}
	var committed int64
	offsets.Each(func(o kadm.OffsetResponse) { committed += o.At })
	if committed != 1 {
		t.Errorf("committed offsets after restart sum to %d, want 1", committed)
	}
}

func TestCommittedTransactionVisibleToReadCommittedAfterRestart(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"DEVKAFKA_ADDR":       "127.0.0.1:0",
		"DEVKAFKA_DATA_DIR":   t.TempDir(),
		"DEVKAFKA_PARTITIONS": "2",
	}
	ctx := context.Background()
	first := start(t, env)
	txn := client(t, first.addr, kgo.TransactionalID("devkafka-test"))
	produceTxn := func(value string, commit kgo.TransactionEndTry) {
		t.Helper()
		if err := txn.BeginTransaction(); err != nil {
			t.Fatalf("begin: %v", err)
		}
		if err := txn.ProduceSync(ctx, &kgo.Record{Topic: kafka.TopicOutcomes, Key: kafka.UserKey(1001), Value: []byte(value)}).FirstErr(); err != nil {
			t.Fatalf("produce %s: %v", value, err)
		}
		if err := txn.EndTransaction(ctx, commit); err != nil {
			t.Fatalf("end %s: %v", value, err)
		}
	}
	produceTxn("committed-1", kgo.TryCommit)
	produceTxn("aborted", kgo.TryAbort)
	produceTxn("committed-2", kgo.TryCommit)
	txn.Close()
	first.stop(t)

	// Restart on the same port and data dir.
	env["DEVKAFKA_ADDR"] = first.addr
	second := start(t, env)
	got := consume(t, second.addr, kafka.TopicOutcomes, 2, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if diff := cmp.Diff([]string{"1001=committed-1", "1001=committed-2"}, got); diff != "" {
		t.Errorf("read_committed records after restart (-want +got):\n%s", diff)
	}
}

func TestSecondInstanceOnSameDataDirFails(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	start(t, map[string]string{"DEVKAFKA_ADDR": "127.0.0.1:0", "DEVKAFKA_DATA_DIR": dir})
	err := broker.Run(context.Background(), nil, func(k string) string {
		return map[string]string{"DEVKAFKA_ADDR": "127.0.0.1:0", "DEVKAFKA_DATA_DIR": dir}[k]
	}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "in use by another devkafka") {
		t.Errorf("second Run = %v, want data dir in use", err)
	}
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want []string
	}{
		{"every env problem at once", map[string]string{"DEVKAFKA_ADDR": "9092", "DEVKAFKA_PARTITIONS": "0", "LOG_LEVEL": "loud"}, nil,
			[]string{`addr "9092"`, "partitions 0: must be at least 1", `log level "loud"`}},
		{"brokers and control addr", map[string]string{"DEVKAFKA_BROKERS": "0", "DEVKAFKA_CONTROL_ADDR": "0.0.0.0:1"}, nil,
			[]string{"brokers 0: want 1 to 16", `control addr "0.0.0.0:1"`}},
		{"non-loopback host", map[string]string{"DEVKAFKA_ADDR": "0.0.0.0:9092"}, nil, []string{"not a loopback address"}},
		{"flag overrides env", map[string]string{"DEVKAFKA_ADDR": "127.0.0.1:9092"}, []string{"-addr", "10.0.0.1:9092"}, []string{`host "10.0.0.1"`}},
		{"bad port", nil, []string{"--addr", "127.0.0.1:99999"}, []string{"not a port number"}},
		{"bad partitions env", map[string]string{"DEVKAFKA_PARTITIONS": "many"}, nil, []string{`DEVKAFKA_PARTITIONS="many": not an integer`}},
		{"unknown flag", nil, []string{"--nope"}, []string{"flag provided but not defined: -nope"}},
		{"positional argument", nil, []string{"serve"}, []string{`unexpected argument "serve"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := broker.Run(context.Background(), tt.args, func(k string) string { return tt.env[k] }, io.Discard, io.Discard)
			var ue *entry.UsageError
			if !errors.As(err, &ue) {
				t.Fatalf("Run = %v, want a *UsageError", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestFlagsOverrideEnv(t *testing.T) {
	t.Parallel()
	_, port, _ := net.SplitHostPort(stacktest.FreeAddr(t))
	dir := t.TempDir()
	in := start(t, map[string]string{"DEVKAFKA_ADDR": "0.0.0.0:1", "DEVKAFKA_DATA_DIR": "/nonexistent/devkafka"},
		"-addr", "localhost:"+port, "--data-dir", dir, "--partitions", "1", "--log-level", "debug", "--sync-writes")
	if _, p, _ := net.SplitHostPort(in.addr); p != port {
		t.Errorf("listening on %s, want port %s", in.addr, port)
	}
	start, ok := in.logs.waitFor("starting")
	if !ok {
		t.Fatal("no starting line")
	}
	cfgLine, _ := start["config"].(map[string]any)
	got := map[string]any{"data_dir": cfgLine["data_dir"], "partitions": cfgLine["partitions"], "sync_writes": cfgLine["sync_writes"]}
	want := map[string]any{"data_dir": dir, "partitions": float64(1), "sync_writes": true}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("effective config (-want +got):\n%s", diff)
	}
}

// logLines collects the JSON log lines written to it.
type logLines struct {
	mu     sync.Mutex
	lines  []map[string]any
	pw     *io.PipeWriter
	notify chan struct{}
	closed bool
}

func newLogLines() *logLines {
	pr, pw := io.Pipe()
	l := &logLines{pw: pw, notify: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) != nil {
				m = map[string]any{"msg": "unparsable: " + sc.Text()}
			}
			l.mu.Lock()
			l.lines = append(l.lines, m)
			close(l.notify)
			l.notify = make(chan struct{})
			l.mu.Unlock()
		}
		l.mu.Lock()
		l.closed = true
		close(l.notify)
		l.mu.Unlock()
	}()
	return l
}

func (l *logLines) Write(p []byte) (int, error) { return l.pw.Write(p) }

// Close ends the stream: waitFor stops waiting for more lines.
func (l *logLines) Close() { l.pw.Close() }

// waitFor returns the first line with msg, waiting for it up to waitLimit.
func (l *logLines) waitFor(msg string) (map[string]any, bool) {
	deadline := time.After(waitLimit)
	for {
		l.mu.Lock()
		for _, m := range l.lines {
			if m["msg"] == msg {
				l.mu.Unlock()
				return m, true
			}
		}
		closed, notify := l.closed, l.notify
		l.mu.Unlock()
		if closed {
			return nil, false
		}
		select {
		case <-notify:
		case <-deadline:
			return nil, false
		}
	}
}
