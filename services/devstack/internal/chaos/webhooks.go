package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/finsvc/finance/pkg/auth"
	"github.com/finsvc/finance/pkg/kafka"
	"github.com/finsvc/finance/pkg/webhook"
	"github.com/finsvc/finance/pkg/wire"
)

// webhookService is the delivery service's name in the stack.
const webhookService = "webhook-delivery"

// webhookEnv is the delivery service's environment in a chaos run: a
// message whose attempt a kill interrupted is sent again after its lease,
// so a short timeout and lease let the drain see it within the run
// (the defaults are 15 s and 1 m).
var webhookEnv = []string{"WEBHOOK_TIMEOUT=5s", "WEBHOOK_LEASE=10s", "WEBHOOK_POLL_INTERVAL=100ms"}

// receiver is the run's webhook subscriber: an endpoint registered through
// the gateway for every event type of every user, on this machine (the
// stack allows loopback endpoints). It verifies each request's signature
// with the secret the registration answered and remembers the event ids it
// accepted; a request it cannot verify is answered 401 and counted.
type receiver struct {
	srv      *http.Server
	verifier *webhook.Verifier
	endpoint string

	mu       sync.Mutex
	received map[string]int // webhook-id → verified deliveries
	bad      int
	badNote  string
}

// startReceiver serves a receiver on a free loopback port and registers it
// at the gateway with an admin token, through hc.
func startReceiver(ctx context.Context, hc *http.Client, gatewayURL string) (*receiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &receiver{received: map[string]int{}}
	r.srv = &http.Server{Handler: http.HandlerFunc(r.serve), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = r.srv.Serve(ln) }()

	tok, err := auth.Mint([]byte(auth.DevSecret), 1, true, 24*time.Hour, time.Now())
	if err != nil {
		r.close()
		return nil, err
	}
	body, _ := json.Marshal(map[string]any{
		"url":         "http://" + ln.Addr().String() + "/hooks/payments",
		"description": "chaos run receiver",
		"enabled":     true,
	})
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, gatewayURL+"/v1/webhooks/endpoints", bytes.NewReader(body))
	if err != nil {
		r.close()
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		r.close()
		return nil, fmt.Errorf("register the webhook receiver: %w", err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		r.close()
		return nil, fmt.Errorf("register the webhook receiver: %s: %s", resp.Status, answer)
	}
	var ep webhook.Endpoint
	if err := json.Unmarshal(answer, &ep); err != nil {
		r.close()
		return nil, fmt.Errorf("register the webhook receiver: %w", err)
	}
	v, err := webhook.NewVerifier(ep.Secret)
	if err != nil {
		r.close()
		return nil, fmt.Errorf("register the webhook receiver: %w", err)
	}
	r.mu.Lock()
	r.verifier, r.endpoint = v, ep.ID.String()
	r.mu.Unlock()
	return r, nil
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	if err != nil {
		http.Error(w, "read", http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	v := r.verifier
	r.mu.Unlock()
	if v == nil {
		// Not registered yet: nothing can have been queued for it.
		http.Error(w, "not ready", http.StatusServiceUnavailable)
		return
	}
	var p webhook.Payload
	err = v.Verify(req.Header, body)
	if err == nil {
		err = json.Unmarshal(body, &p)
	}
	if err == nil && p.ID != req.Header.Get("webhook-id") {
		err = fmt.Errorf("body id %q, header webhook-id %q", p.ID, req.Header.Get("webhook-id"))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.bad++
		if r.badNote == "" {
			r.badNote = fmt.Sprintf("webhook-id %q: %v", req.Header.Get("webhook-id"), err)
		}
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	r.received[p.ID]++
	w.WriteHeader(http.StatusNoContent)
}

func (r *receiver) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = r.srv.Shutdown(ctx)
}

// missing returns the ids of want the receiver has not accepted.
func (r *receiver) missing(want map[string]struct{}) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for id := range want {
		if r.received[id] == 0 {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

// expectedWebhooks reads payments.events from its start and returns the id
// of every event of a payment in payments (this run's) that maps to a
// webhook type: the events the receiver, subscribed to all, must get. The
// topic is read committed until a poll of quiet brings nothing (the run
// has drained by then).
func expectedWebhooks(ctx context.Context, brokers []string, payments map[int64]bool) (map[string]struct{}, error) {
	cl, err := kafka.NewClient(brokers, slog.New(slog.DiscardHandler),
		kgo.ConsumeTopics(kafka.TopicEvents),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	want := map[string]struct{}{}
	seen := 0
	for {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		fs := cl.PollFetches(pctx)
		cancel()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		n := 0
		var decodeErr error
		fs.EachRecord(func(rec *kgo.Record) {
			n++
			ev, err := wire.DecodeEvent(rec.Value)
			if err != nil {
				decodeErr = fmt.Errorf("%s/%d@%d: %w", rec.Topic, rec.Partition, rec.Offset, err)
				return
			}
			if !payments[ev.PaymentID] {
				return
			}
			if _, ok := webhook.TypeOf(ev); ok {
				want[ev.ID()] = struct{}{}
			}
		})
		if decodeErr != nil {
			return nil, decodeErr
		}
		for _, e := range fs.Errors() {
			if e.Err != context.DeadlineExceeded {
				return nil, fmt.Errorf("read %s: %w", kafka.TopicEvents, e.Err)
			}
		}
		seen += n
		if n == 0 && seen > 0 {
			return want, nil
		}
		if n == 0 && len(payments) == 0 {
			return want, nil
		}
	}
}

// checkWebhooks waits up to timeout for the receiver to have accepted every
// event of this run's payments that maps to a webhook type, at least once
// and with a verified signature, and records the verdict in rep.
func checkWebhooks(ctx context.Context, pool *pgxpool.Pool, brokers []string, r *receiver, rep *Report, timeout time.Duration, logf func(string, ...any)) error {
	payments := map[int64]bool{}
	rows, err := pool.Query(ctx, `SELECT id FROM payments WHERE source = 'api'`)
	if err != nil {
		return err
	}
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return err
		}
		payments[id] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	want, err := expectedWebhooks(ctx, brokers, payments)
	if err != nil {
		return fmt.Errorf("webhooks: %w", err)
	}
	rep.WebhooksChecked = true
	rep.WebhookEvents = len(want)
	logf("webhooks: %d events of %d payments map to a webhook; waiting up to %v for the receiver to have each", len(want), len(payments), timeout)
	deadline := time.Now().Add(timeout)
	var missing []string
	for {
		missing = r.missing(want)
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		if !slept(ctx, time.Second) {
			return ctx.Err()
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, n := range r.received {
		rep.WebhookDeliveries += n
	}
	rep.WebhookDistinct = len(r.received)
	rep.WebhookMissing = len(missing)
	rep.WebhookBadSignatures = r.bad
	for i, id := range missing {
		if i == 10 {
			rep.Examples = append(rep.Examples, fmt.Sprintf("WEBHOOK NOT DELIVERED: %d more", len(missing)-i))
			break
		}
		rep.Examples = append(rep.Examples, fmt.Sprintf("WEBHOOK NOT DELIVERED: event %s to endpoint %s", id, r.endpoint))
	}
	if r.badNote != "" {
		rep.Examples = append(rep.Examples, "WEBHOOK SIGNATURE REFUSED: "+r.badNote)
	}
	return nil
}

// webhookLine is the report's line on the webhooks.
func (r *Report) webhookLine() string {
	if !r.WebhooksChecked {
		return "not checked"
	}
	return fmt.Sprintf("%d events, %d missing at the receiver; %d verified deliveries of %d distinct events, %d refused signatures",
		r.WebhookEvents, r.WebhookMissing, r.WebhookDeliveries, r.WebhookDistinct, r.WebhookBadSignatures)
}
