package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/finsvc/finance/pkg/kafka"
	"github.com/finsvc/finance/pkg/kafkatest"
	"github.com/finsvc/finance/pkg/ledger"
	"github.com/finsvc/finance/pkg/payment"
	"github.com/finsvc/finance/pkg/pgtest"
	"github.com/finsvc/finance/pkg/stacktest"
	"github.com/finsvc/finance/pkg/testkit"
	"github.com/finsvc/finance/pkg/webhook"
	"github.com/finsvc/finance/pkg/wire"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// 1,000 events are delivered across a SIGKILL of the real binary, in the
// middle of the stream, with none lost: the receiver sees every event id at
// least once, correctly signed.
func TestThousandEventsAcrossASIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the binary")
	}
	bin := stacktest.Binaries(t, "webhook-delivery")
	dbURL := pgtest.NewDB(t)
	cluster := kafkatest.New(t, 4, []string{kafka.TopicEvents, "payments.webhooks.dlq"})

	secret := webhook.NewSecret()
	v, err := webhook.NewVerifier(secret.Reveal())
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := map[string]int{}
	bad := 0
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var p webhook.Payload
		mu.Lock()
		defer mu.Unlock()
		if v.Verify(r.Header, body) != nil || json.Unmarshal(body, &p) != nil {
			bad++
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		seen[p.ID]++
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(rcv.Close)
	distinct := func() int { mu.Lock(); defer mu.Unlock(); return len(seen) }

	ctx := context.Background()
	pool := pgtestPool(t, dbURL)
	if _, err := pool.Exec(ctx, `INSERT INTO webhook_endpoints (url, secret) VALUES ($1, $2)`, rcv.URL, secret.Reveal()); err != nil {
		t.Fatal(err)
	}

	start := func() (*exec.Cmd, *stacktest.Buffer) {
		out := &stacktest.Buffer{}
		cmd := exec.Command(filepath.Join(bin, "webhook-delivery"))
		cmd.Env = append(os.Environ(),
			"DATABASE_URL="+dbURL, "DATABASE_MAX_CONNS=4",
			"KAFKA_BROKERS="+strings.Join(cluster.Brokers(), ","),
			"OPS_ADDR="+stacktest.FreeAddr(t),
			"FINANCE_DEV_MODE=true", "WEBHOOK_ALLOW_PRIVATE=127.0.0.0/8",
			"WEBHOOK_TIMEOUT=2s", "WEBHOOK_LEASE=3s", "WEBHOOK_POLL_INTERVAL=50ms",
			"WEBHOOK_RETRY_SCHEDULE=0,100ms,100ms,100ms,100ms,100ms,100ms,100ms",
			"CONSUMER_MAX_POLL_RECORDS=50")
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd, out
	}
	cmd, out := start()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			_ = cmd.Wait()
		}
		if t.Failed() {
			t.Logf("service output:\n%s", out.String())
		}
	})

	producer, err := kafka.NewClient(cluster.Brokers(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	const n = 1000
	publish := func(from, to int) {
		recs := make([]*kgo.Record, 0, to-from)
		for i := from; i < to; i++ {
			user := int64(1 + i%37)
			ev := ledger.Event{PaymentID: int64(100000 + i), PaymentUID: uuid.New(), UserID: user, MerchantID: 1, Amount: -1,
				Status: payment.StatusSucceeded, UserSeq: int64(i/37 + 1), OccurredAt: time.Now()}
			val, err := wire.EncodeEvent(ev)
			if err != nil {
				t.Fatal(err)
			}
			recs = append(recs, &kgo.Record{Topic: kafka.TopicEvents, Key: kafka.UserKey(user), Value: val})
		}
		if err := producer.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	publish(0, n/2)
	testkit.Eventually(t, "some deliveries before the kill", func() bool { return distinct() >= 50 })
	// SIGKILL in the middle: offsets, queue rows and attempts as they are.
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	killedAt := distinct()
	publish(n/2, n)

	cmd, out = start()
	testkit.Eventually(t, "every event delivered", func() bool { return distinct() == n })
	mu.Lock()
	defer mu.Unlock()
	t.Logf("delivered %d before the kill; %d distinct events, %d bad requests", killedAt, len(seen), bad)
	if killedAt >= n {
		t.Errorf("the kill came after every delivery (%d): it tested nothing", killedAt)
	}
	if bad != 0 {
		t.Errorf("%d requests failed verification", bad)
	}
}

func pgtestPool(t *testing.T, url string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}
