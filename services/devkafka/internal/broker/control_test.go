package broker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/finsvc/finance/pkg/freeport"
	"github.com/finsvc/finance/pkg/kafka"
	"github.com/finsvc/finance/pkg/stacktest"
)

// freeConsecutive returns a loopback address whose port and the n-1 ports
// after it were free a moment ago.
func freeConsecutive(t *testing.T, n int) string {
	t.Helper()
	a, err := freeport.Addrs(n)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// ctl calls the control API and decodes the JSON reply into out (if not nil).
func ctl(t *testing.T, base, method, path, body string, out any) int {
	t.Helper()
	var r *bytes.Reader
	if body != "" {
		r = bytes.NewReader([]byte(body))
	} else {
		r = bytes.NewReader(nil)
	}
	req, err := http.NewRequest(method, "http://"+base+path, r)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("%s %s: decode: %v", method, path, err)
		}
	}
	return resp.StatusCode
}

type faultList struct {
	Faults []struct {
		Kind  string `json:"kind"`
		Error string `json:"error"`
		Count int    `json:"count"`
		Hits  int    `json:"hits"`
	} `json:"faults"`
	LeaderMoves int `json:"leader_moves"`
}

// TestControlFaultsAreRetriedByClients installs each kind of fault and checks
// that a client still gets its work done through them, that the faults were
// hit, and that DELETE removes what is left.
func TestControlFaultsAreRetriedByClients(t *testing.T) {
	t.Parallel()
	addr := freeConsecutive(t, 3)
	ctlAddr := stacktest.FreeAddr(t)
	in := start(t, map[string]string{
		"DEVKAFKA_ADDR":         addr,
		"DEVKAFKA_DATA_DIR":     t.TempDir(),
		"DEVKAFKA_PARTITIONS":   "3",
		"DEVKAFKA_BROKERS":      "3",
		"DEVKAFKA_CONTROL_ADDR": ctlAddr,
	})
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()

	// Three brokers on consecutive ports.
	meta := client(t, in.addr)
	brokers, err := brokerAddrs(ctx, meta)
	if err != nil {
		t.Fatal(err)
	}
	_, p, _ := net.SplitHostPort(addr)
	base, _ := strconv.Atoi(p)
	want := []string{addr, "127.0.0.1:" + strconv.Itoa(base+1), "127.0.0.1:" + strconv.Itoa(base+2)}
	if diff := cmp.Diff(want, brokers); diff != "" {
		t.Errorf("brokers (-want +got):\n%s", diff)
	}

	for _, body := range []string{
		`{"kind":"produce","count":2}`,
		`{"kind":"produce","count":1,"error":"REQUEST_TIMED_OUT"}`,
		`{"kind":"fetch","count":2}`,
		`{"kind":"commit","count":2}`,
		`{"kind":"txn","count":2}`,
	} {
		if code := ctl(t, ctlAddr, "POST", "/faults", body, nil); code != http.StatusCreated {
			t.Fatalf("POST /faults %s = %d", body, code)
		}
	}

	// A transactional producer that also commits a group's offsets meets
	// produce, txn and commit faults; a group consumer meets fetch faults.
	prod := client(t, in.addr, kgo.TransactionalID("control-test"), kgo.DefaultProduceTopic(kafka.TopicRequested))
	for i := range 3 {
		if err := prod.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		rec := &kgo.Record{Key: kafka.UserKey(int64(i + 1)), Value: []byte("v" + strconv.Itoa(i))}
		if err := prod.ProduceSync(ctx, rec).FirstErr(); err != nil {
			t.Fatalf("produce %d: %v", i, err)
		}
		if err := prod.EndTransaction(ctx, kgo.TryCommit); err != nil {
			t.Fatalf("commit transaction %d: %v", i, err)
		}
	}
	group := client(t, in.addr, kgo.ConsumerGroup("control-test"), kgo.ConsumeTopics(kafka.TopicRequested),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit(),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	var got []string
	for len(got) < 3 && ctx.Err() == nil {
		group.PollFetches(ctx).EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
	}
	if len(got) != 3 {
		t.Fatalf("consumed %v, want 3 records, each once", got)
	}
	if err := group.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatalf("commit offsets: %v", err)
	}

	var list faultList
	ctl(t, ctlAddr, "GET", "/faults", "", &list)
	hits := map[string]int{}
	for _, f := range list.Faults {
		hits[f.Kind] += f.Hits
	}
	for _, k := range []string{"produce", "fetch", "commit", "txn"} {
		if hits[k] == 0 {
			t.Errorf("%s faults were never hit: %+v", k, list.Faults)
		}
	}
	var removed struct {
		Removed int `json:"removed"`
	}
	if code := ctl(t, ctlAddr, "DELETE", "/faults", "", &removed); code != http.StatusOK || removed.Removed != 5 {
		t.Errorf("DELETE /faults = %d %+v, want 200 and 5 removed", code, removed)
	}
	ctl(t, ctlAddr, "GET", "/faults", "", &list)
	if len(list.Faults) != 0 {
		t.Errorf("faults after DELETE: %+v", list.Faults)
	}

	// Leader moves: the producer keeps working across them.
	for range 3 {
		if code := ctl(t, ctlAddr, "POST", "/leader-moves", `{"coordinators":true}`, nil); code != http.StatusOK {
			t.Fatalf("POST /leader-moves = %d", code)
		}
		if err := prod.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		if err := prod.ProduceSync(ctx, &kgo.Record{Key: kafka.UserKey(9), Value: []byte("after-move")}).FirstErr(); err != nil {
			t.Fatalf("produce after a leader move: %v", err)
		}
		if err := prod.EndTransaction(ctx, kgo.TryCommit); err != nil {
			t.Fatalf("commit after a leader move: %v", err)
		}
	}
	ctl(t, ctlAddr, "GET", "/faults", "", &list)
	if list.LeaderMoves != 3 {
		t.Errorf("leader_moves = %d, want 3", list.LeaderMoves)
	}
}

func TestControlRejectsBadRequests(t *testing.T) {
	t.Parallel()
	ctlAddr := stacktest.FreeAddr(t)
	start(t, map[string]string{
		"DEVKAFKA_ADDR":         stacktest.FreeAddr(t),
		"DEVKAFKA_DATA_DIR":     t.TempDir(),
		"DEVKAFKA_CONTROL_ADDR": ctlAddr,
	})
	tests := []struct {
		name, method, path, body string
		code                     int
		want                     string
	}{
		{"unknown kind", "POST", "/faults", `{"kind":"disk","count":1}`, 400, `kind "disk"`},
		{"error of another kind", "POST", "/faults", `{"kind":"txn","error":"NOT_COORDINATOR"}`, 400, "want one of"},
		{"bad count", "POST", "/faults", `{"kind":"fetch","count":-2}`, 400, "count -2"},
		{"unknown field", "POST", "/faults", `{"kind":"fetch","n":1}`, 400, "unknown field"},
		{"leader moves with one broker", "POST", "/leader-moves", "", 409, "one broker"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var out struct {
				Error string `json:"error"`
			}
			code := ctl(t, ctlAddr, tt.method, tt.path, tt.body, &out)
			if code != tt.code || !strings.Contains(out.Error, tt.want) {
				t.Errorf("%s %s %s = %d %q, want %d containing %q", tt.method, tt.path, tt.body, code, out.Error, tt.code, tt.want)
			}
		})
	}
}

func TestControlOffByDefault(t *testing.T) {
	t.Parallel()
	in := start(t, map[string]string{"DEVKAFKA_ADDR": stacktest.FreeAddr(t), "DEVKAFKA_DATA_DIR": t.TempDir()})
	// "listening" comes after the control server's line, had there been one.
	in.logs.mu.Lock()
	defer in.logs.mu.Unlock()
	for _, l := range in.logs.lines {
		if l["msg"] == "control server listening" {
			t.Errorf("a control server started without DEVKAFKA_CONTROL_ADDR: %v", l)
		}
	}
}

// brokerAddrs lists the cluster's brokers by node id.
func brokerAddrs(ctx context.Context, cl *kgo.Client) ([]string, error) {
	bs, err := kadm.NewClient(cl).ListBrokers(ctx)
	if err != nil {
		return nil, err
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i].NodeID < bs[j].NodeID })
	var out []string
	for _, b := range bs {
		out = append(out, net.JoinHostPort(b.Host, strconv.Itoa(int(b.Port))))
	}
	return out, nil
}
