package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/finsvc/finance/pkg/auth"
	"github.com/finsvc/finance/pkg/simclient"
	"github.com/finsvc/finance/pkg/stacktest"
	"github.com/finsvc/finance/pkg/testkit"
	"github.com/finsvc/finance/pkg/webhook"
)

// BenchmarkWebhookAnswerTo2xx measures issue 15's third benchmark figure:
// the time from the processor's answer to the subscriber's 2xx. It starts
// the whole stack as `make run` does (`devstack run`, every service its own
// process), registers a receiver on this machine (the stack allowlists
// loopback) for payment.succeeded and payment.failed, sends 600 payments
// at a steady 20/s (well under the processor's limit of 300/s, so that
// no queue builds anywhere), and matches each payment's webhook arrival,
// by the payment's uid in its data, with the simulator's record of when it
// executed that payment (as loadtest's burst-poll does for answer →
// visible). Both clocks are this machine's. docs/webhooks.md has the
// numbers:
//
//	go test ./services/devstack -run '^$' -bench WebhookAnswerTo2xx -benchtime 1x
func BenchmarkWebhookAnswerTo2xx(b *testing.B) {
	for range b.N {
		webhookAnswerTo2xx(b)
	}
}

// arrivals is the receiver: the first time each payment's final webhook
// was answered 2xx, by payment uid.
type arrivals struct {
	mu sync.Mutex
	at map[string]time.Time
}

func (a *arrivals) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	var p webhook.Payload
	if err == nil {
		err = json.Unmarshal(body, &p)
	}
	if err != nil {
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	now := time.Now()
	a.mu.Lock()
	if _, seen := a.at[p.Data.UID]; !seen {
		a.at[p.Data.UID] = now
	}
	a.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (a *arrivals) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.at)
}

func webhookAnswerTo2xx(b *testing.B) {
	const payments, rate = 600, 20
	env := devstackEnv(b, stacktest.Binaries(b, services...))
	d := startDevstack(b, env)
	gateway := "http://" + env["GATEWAY_ADDR"]

	recv := &arrivals{at: map[string]time.Time{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: recv, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	b.Cleanup(func() { _ = srv.Close() })
	registerReceiver(b, gateway, mintToken(b, auth.DevSecret, 1, true), "http://"+ln.Addr().String()+"/hooks")
	hc := apiClient(b, 15*time.Second)

	// Steady load: one payment every 1/rate s, each sent by its own
	// goroutine so that a slow answer does not shift the schedule.
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		uids []string
	)
	tick := time.NewTicker(time.Second / rate)
	defer tick.Stop()
	prefix := fmt.Sprintf("whlat-%d-", time.Now().UnixNano())
	for i := range payments {
		<-tick.C
		wg.Add(1)
		go func() {
			defer wg.Done()
			user := restoreUsers[i%len(restoreUsers)]
			token, err := auth.Mint([]byte(auth.DevSecret), user, false, time.Hour, time.Now())
			if err != nil {
				b.Error(err)
				return
			}
			p, err := postPayment(hc, gateway, token, fmt.Sprintf("%s%d", prefix, i), user, -int64(10+i%20))
			if err != nil {
				b.Error(err)
				return
			}
			mu.Lock()
			uids = append(uids, p.UID)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if b.Failed() {
		return
	}
	testkit.EventuallyWithin(b, 3*time.Minute, "every payment's webhook arrives", func() bool {
		d.running()
		return recv.count() >= payments
	})

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	executed := map[string]time.Time{}
	for e, err := range simclient.New("http://" + env["SIM_ADDR"]).Executions(ctx) {
		if err != nil {
			b.Fatal(err)
		}
		if uid, ok := e.PaymentUID(); ok {
			if at, seen := executed[uid.String()]; !seen || e.ExecutedAt.Before(at) {
				executed[uid.String()] = e.ExecutedAt
			}
		}
	}
	recv.mu.Lock()
	var lat []time.Duration
	for _, uid := range uids {
		ex, ok1 := executed[uid]
		got, ok2 := recv.at[uid]
		if ok1 && ok2 {
			lat = append(lat, got.Sub(ex))
		}
	}
	recv.mu.Unlock()
	if len(lat) < payments*9/10 {
		b.Fatalf("only %d of %d payments have both an execution record and a webhook", len(lat), payments)
	}
	slices.Sort(lat)
	pct := func(q int) time.Duration { return lat[(len(lat)-1)*q/100] }
	b.Logf("%d payments at %d/s, %d matched: answer → 2xx p50 %v, p90 %v, p99 %v, max %v",
		payments, rate, len(lat), pct(50), pct(90), pct(99), lat[len(lat)-1])
	b.ReportMetric(float64(pct(50).Microseconds())/1000, "p50_answer_to_2xx_ms")
	b.ReportMetric(float64(pct(99).Microseconds())/1000, "p99_answer_to_2xx_ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max_answer_to_2xx_ms")
	b.ReportMetric(0, "ns/op")
	d.stop()
}

// registerReceiver registers url with the admin token admin for the final
// outcomes of every user's payments, and returns the endpoint's signing
// secret as the registration answered it.
func registerReceiver(tb testing.TB, gateway, admin, url string) string {
	tb.Helper()
	body, _ := json.Marshal(map[string]any{
		"url":         url,
		"event_types": []string{"payment.succeeded", "payment.failed"},
		"description": "end-to-end test receiver",
		"enabled":     true,
	})
	req, _ := http.NewRequest(http.MethodPost, gateway+"/v1/webhooks/endpoints", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+admin)
	req.Header.Set("Content-Type", "application/json")
	resp, err := apiClient(tb, 30*time.Second).Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	var ep struct {
		Secret string `json:"secret"`
	}
	if resp.StatusCode != http.StatusCreated || json.Unmarshal(answer, &ep) != nil || ep.Secret == "" {
		tb.Fatalf("register the receiver: %s: %s", resp.Status, answer)
	}
	return ep.Secret
}
