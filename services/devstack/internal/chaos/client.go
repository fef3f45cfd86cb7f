package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/finsvc/finance/pkg/auth"
)

// Merchants the payments go to: debits to Apple (seeded by seed --demo),
// top-ups from Pleo.
const (
	debitMerchant  = 4593
	creditMerchant = 1
)

// answer is what a client was finally told about one payment.
type answer struct {
	Key      string `json:"key"`
	UserID   int64  `json:"user_id"`
	Amount   int64  `json:"amount"`
	Code     int    `json:"code"` // 202, 200, 422, or 0 when the client gave up
	Problem  string `json:"problem,omitempty"`
	ID       int64  `json:"id,omitempty"`
	Status   string `json:"status,omitempty"`
	Attempts int    `json:"attempts"`
	// ReplayID is the payment id a second send of the same key answered,
	// for the payments sent twice on purpose.
	ReplayID int64 `json:"replay_id,omitempty"`
}

// traffic sends the payments and records what every client was told.
type traffic struct {
	cfg     Config
	gateway string
	runID   string
	http    *http.Client

	sent     atomic.Int64 // payments whose first attempt went out
	attempts atomic.Int64 // HTTP attempts, retries included
	retries  atomic.Int64

	mu      sync.Mutex
	answers []answer
	tokens  map[int64]string
}

func newTraffic(cfg Config, gatewayURL string) *traffic {
	return &traffic{
		cfg:     cfg,
		gateway: gatewayURL,
		runID:   strconv.FormatInt(time.Now().UnixNano(), 36),
		// No keep-alive reuse surprises: net/http silently re-sends a
		// request with an Idempotency-Key on a dead reused connection,
		// which is safe but hides the failure from our counts.
		http:    cfg.apiClient(5*time.Second, &http.Transport{MaxIdleConnsPerHost: 64}),
		answers: make([]answer, cfg.Payments),
		tokens:  map[int64]string{},
	}
}

func (t *traffic) token(user int64) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if tok, ok := t.tokens[user]; ok {
		return tok, nil
	}
	tok, err := auth.Mint([]byte(auth.DevSecret), user, false, 24*time.Hour, time.Now())
	if err != nil {
		return "", err
	}
	t.tokens[user] = tok
	return tok, nil
}

// run sends cfg.Payments payments at cfg.Rate from cfg.Clients clients and
// returns when every client has its final answer (or gave up).
func (t *traffic) run(ctx context.Context) error {
	lim := rate.NewLimiter(rate.Limit(t.cfg.Rate), 1)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, t.cfg.Clients)
	for c := 0; c < t.cfg.Clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(c), uint64(time.Now().UnixNano())))
			for {
				i := int(next.Add(1)) - 1
				if i >= t.cfg.Payments {
					return
				}
				if err := lim.Wait(ctx); err != nil {
					return
				}
				user := t.cfg.StartID + rng.Int64N(int64(t.cfg.Users))
				amount := -(100 + rng.Int64N(2900)) // 1.00 to 30.00
				if rng.IntN(10) == 0 {
					amount = 500 + rng.Int64N(4500) // a top-up
				}
				a := answer{Key: fmt.Sprintf("chaos-%s-%d", t.runID, i), UserID: user, Amount: amount}
				t.sent.Add(1)
				if err := t.pay(ctx, &a, rng); err != nil {
					errs <- err
					return
				}
				// One payment in twenty is sent again with the same key,
				// as a client that did not trust its first answer.
				if a.ID != 0 && rng.IntN(20) == 0 {
					again := answer{Key: a.Key, UserID: a.UserID, Amount: a.Amount}
					if err := t.pay(ctx, &again, rng); err != nil {
						errs <- err
						return
					}
					a.ReplayID = again.ID
					if again.ID == 0 {
						a.ReplayID = -1 // no id: the replay was refused
					}
				}
				t.mu.Lock()
				t.answers[i] = a
				t.mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	return ctx.Err()
}

// giveUpAfter bounds how long one client retries one payment. A service is
// down at most a few restart delays (10 s at most each) at a time.
const giveUpAfter = 3 * time.Minute

// pay sends one payment until it gets a final answer: 202 or 200 (accepted,
// or a replay), or 422 (refused, nothing written). A connection error, a
// timeout, 5xx, 409 or 429 is retried with the same key after a jittered,
// growing pause.
func (t *traffic) pay(ctx context.Context, a *answer, rng *rand.Rand) error {
	tok, err := t.token(a.UserID)
	if err != nil {
		return err
	}
	merchant := int64(debitMerchant)
	if a.Amount > 0 {
		merchant = creditMerchant
	}
	body, _ := json.Marshal(map[string]int64{"user_id": a.UserID, "merchant_id": merchant, "amount": a.Amount})
	deadline := time.Now().Add(giveUpAfter)
	pause := 200 * time.Millisecond
	for {
		a.Attempts++
		t.attempts.Add(1)
		code, hdr, resp, err := t.post(ctx, tok, a.Key, body)
		retryAfter := time.Duration(0)
		switch {
		case err != nil:
		case code == http.StatusAccepted || code == http.StatusOK:
			var p struct {
				ID     int64  `json:"id"`
				Status string `json:"status"`
			}
			if jerr := json.Unmarshal(resp, &p); jerr != nil || p.ID == 0 {
				return fmt.Errorf("payment %s: %d with an unreadable body %q", a.Key, code, resp)
			}
			a.Code, a.ID, a.Status = code, p.ID, p.Status
			return nil
		case code == http.StatusUnprocessableEntity:
			var p struct {
				Type string `json:"type"`
			}
			_ = json.Unmarshal(resp, &p)
			a.Code, a.Problem = code, p.Type
			return nil
		case code == http.StatusConflict || code == http.StatusTooManyRequests || code >= 500:
			if s, perr := strconv.Atoi(hdr.Get("Retry-After")); perr == nil && s > 0 {
				retryAfter = time.Duration(s) * time.Second
			}
		default:
			// 400, 401, 403, 404: a bug in the client or the gateway.
			a.Code = code
			var p struct {
				Type string `json:"type"`
			}
			_ = json.Unmarshal(resp, &p)
			a.Problem = "unexpected: " + p.Type + " " + string(resp)
			return nil
		}
		if time.Now().After(deadline) {
			a.Code = 0
			return nil
		}
		t.retries.Add(1)
		wait := pause/2 + time.Duration(rng.Int64N(int64(pause)))
		wait = max(wait, retryAfter)
		pause = min(pause*2, 5*time.Second)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}

func (t *traffic) post(ctx context.Context, token, key string, body []byte) (int, http.Header, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.gateway+"/v1/payments", bytes.NewReader(body))
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	resp, err := t.http.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, nil, err
	}
	return resp.StatusCode, resp.Header, b, nil
}

// snapshot returns the answers recorded so far (zero values for payments
// still in flight).
func (t *traffic) snapshot() []answer {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]answer(nil), t.answers...)
}
