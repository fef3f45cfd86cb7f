// Package delivery is the webhook-delivery service: it consumes
// payments.events, writes one message per matching enabled endpoint to the
// webhook_messages queue in PostgreSQL before it commits the records'
// offsets, and sends the due messages, each (endpoint, user) lane in order,
// with retries scheduled in the queue, a concurrency bound and a circuit
// breaker per endpoint. See the service's README.
package delivery

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/finsvc/finance/pkg/kafka"
	"github.com/finsvc/finance/pkg/ledger"
	"github.com/finsvc/finance/pkg/obs"
	"github.com/finsvc/finance/pkg/webhook"
	"github.com/finsvc/finance/pkg/wire"
)

// Group is the service's consumer group on payments.events.
const Group = "webhook-delivery"

// DefaultDLQTopic receives the messages whose retries are spent.
const DefaultDLQTopic = "payments.webhooks.dlq"

// DefaultOpsTopic receives the service's operational events: an endpoint
// it disabled (OpsEvent).
const DefaultOpsTopic = "payments.webhooks.ops"

// OpsEvent is a record on the ops topic, JSON, keyed by the endpoint id:
// the operational event of an endpoint the service disabled, for whoever
// must tell its owner.
type OpsEvent struct {
	Type       string    `json:"type"` // "endpoint.disabled"
	EndpointID uuid.UUID `json:"endpoint_id"`
	// Reason is the endpoint's disabled_reason: "gone" (it answered 410)
	// or "failing" (retries spent, nothing delivered since).
	Reason    string    `json:"reason"`
	EventID   string    `json:"event_id"` // the message whose attempt disabled it
	Status    int       `json:"status,omitempty"`
	LastError string    `json:"last_error"`
	At        time.Time `json:"at"`
}

// OpsEndpointDisabled is OpsEvent.Type of a disabled endpoint.
const OpsEndpointDisabled = "endpoint.disabled"

// DefaultSchedule is the delay before each attempt: immediately, then 5 s,
// 5 min, 30 min, 2 h, 5 h, 10 h and 10 h (about 28 hours in all).
func DefaultSchedule() []time.Duration {
	return []time.Duration{0, 5 * time.Second, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour, 5 * time.Hour, 10 * time.Hour, 10 * time.Hour}
}

// Config is the service's part of the configuration.
type Config struct {
	Brokers []string
	// KafkaOpts are more client options: an external cluster's SASL and
	// TLS (kafka.SecurityOpts).
	KafkaOpts      []kgo.Opt
	DLQTopic       string
	OpsTopic       string
	MaxPollRecords int
	// Schedule is the delay before each attempt; its length is the number
	// of attempts.
	Schedule []time.Duration
	// Timeout bounds one attempt: a 2xx within it is a success.
	Timeout time.Duration
	// Lease is how long a claimed message stays with this replica; it must
	// exceed Timeout. A message of a replica that died is sent again after it.
	Lease               time.Duration
	MaxInFlight         int
	EndpointConcurrency int
	BreakerFailures     uint32
	BreakerOpen         time.Duration
	PollInterval        time.Duration
	ResponseLogBytes    int
	Policy              webhook.Policy
}

// Service consumes payments.events and delivers webhooks.
type Service struct {
	cfg    Config
	q      queue
	cl     *kgo.Client
	logger *slog.Logger
	m      *metrics
	wake   chan struct{}
	// tracer starts the attempt spans (OpenTelemetry's global provider,
	// see obs.StartTracing).
	tracer trace.Tracer
	// results carries finished attempts to the writer, which records them
	// in batches (writeResults).
	results chan *result

	mu        sync.Mutex
	inFlight  int
	endpoints map[uuid.UUID]*endpointState
	wg        sync.WaitGroup
}

// endpointState is one endpoint's isolation: its in-flight count, its
// circuit breaker and its own HTTP client, whose transport holds at most
// EndpointConcurrency connections (idle ones closed after 90 s), so that
// endpoints on one host never share or wait for each other's connections.
type endpointState struct {
	inFlight int
	cb       *gobreaker.TwoStepCircuitBreaker[struct{}]
	http     *http.Client
}

// New returns a service on db; Close it after Run.
func New(cfg Config, db *pgxpool.Pool, logger *slog.Logger, reg prometheus.Registerer) (*Service, error) {
	if len(cfg.Schedule) == 0 {
		return nil, errors.New("webhook delivery: empty retry schedule")
	}
	s := &Service{
		cfg:       cfg,
		q:         queue{db: db},
		results:   make(chan *result, cfg.MaxInFlight),
		logger:    logger,
		m:         newMetrics(reg),
		wake:      make(chan struct{}, 1),
		endpoints: map[uuid.UUID]*endpointState{},
		tracer:    otel.Tracer("github.com/finsvc/finance/services/webhook-delivery"),
	}
	cl, err := kafka.NewClient(cfg.Brokers, logger, append([]kgo.Opt{
		kgo.ConsumerGroup(Group),
		kgo.ConsumeTopics(kafka.TopicEvents),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.SessionTimeout(10 * time.Second),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kafka.Metrics(reg, "webhook-delivery"),
	}, cfg.KafkaOpts...)...)
	if err != nil {
		return nil, err
	}
	s.cl = cl
	return s, nil
}

// Close leaves the group.
func (s *Service) Close() { s.cl.Close() }

// Ping checks the broker.
func (s *Service) Ping(ctx context.Context) error { return kafka.Ping(ctx, s.cl) }

// Run consumes and delivers until ctx ends, then lets the attempts in
// flight finish and record their outcome.
func (s *Service) Run(ctx context.Context) error {
	for _, topic := range []string{s.cfg.DLQTopic, s.cfg.OpsTopic} {
		if err := kafka.EnsureTopics(ctx, s.cl, 1, topic); err != nil {
			s.logger.WarnContext(ctx, "webhook topic", "topic", topic, "err", err)
		}
	}
	errc := make(chan error, 1)
	go func() { errc <- s.consume(ctx) }()
	writerDone := make(chan struct{})
	go func() { defer close(writerDone); s.writeResults(ctx) }()
	s.schedule(ctx)
	s.wg.Wait() // every attempt recorded: the writer has nothing left
	close(s.results)
	<-writerDone
	return <-errc
}

// consume writes each polled batch's messages to the queue, then commits
// the batch's offsets: an event is in PostgreSQL before Kafka forgets it.
func (s *Service) consume(ctx context.Context) error {
	for {
		fetches := s.cl.PollRecords(ctx, s.cfg.MaxPollRecords)
		if fetches.IsClientClosed() || ctx.Err() != nil {
			s.cl.AllowRebalance()
			return nil
		}
		fetches.EachError(func(topic string, partition int32, err error) {
			s.logger.ErrorContext(ctx, "fetch", "topic", topic, "partition", partition, "err", err)
		})
		recs := fetches.Records()
		if len(recs) > 0 {
			var enqueued int64
			err := backoff.Retry(func() (err error) { enqueued, err = s.enqueue(ctx, recs); return err },
				backoff.WithContext(backoff.NewExponentialBackOff(backoff.WithMaxElapsedTime(0)), ctx))
			if err != nil {
				// Only a stop ends the retries: the batch is not committed
				// and comes again.
				s.cl.AllowRebalance()
				return nil
			}
			if err := s.cl.CommitRecords(ctx, recs...); err != nil {
				s.logger.ErrorContext(ctx, "commit offsets", "err", err)
			}
			if enqueued > 0 {
				// Only new messages wake the scheduler: with no endpoint
				// for these events there is nothing to claim.
				s.signal()
			}
		}
		s.cl.AllowRebalance()
	}
}

// enqueue turns records into messages and inserts them; it returns how
// many were new.
func (s *Service) enqueue(ctx context.Context, recs []*kgo.Record) (int64, error) {
	decoded := make([]ledgerEvent, 0, len(recs))
	for _, r := range recs {
		ev, err := wire.DecodeEvent(r.Value)
		if err != nil {
			s.m.undecodable.Inc()
			s.logger.ErrorContext(ctx, "undecodable payments.events record", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "err", err)
			continue
		}
		t, ok := webhook.TypeOf(ev)
		if !ok {
			continue
		}
		decoded = append(decoded, ledgerEvent{ev: ev, t: t, trace: traceParent(r)})
	}
	if len(decoded) == 0 {
		return 0, nil
	}
	subs, err := s.q.subscriptions(ctx)
	if err != nil {
		return 0, err
	}
	if len(subs) == 0 {
		return 0, nil
	}
	ids := make([]int64, 0, len(decoded))
	for _, d := range decoded {
		ids = append(ids, d.ev.PaymentID)
	}
	stored, err := s.q.stored(ctx, ids)
	if err != nil {
		return 0, err
	}
	var msgs []newMessage
	for _, d := range decoded {
		var body []byte
		for _, sub := range subs {
			if !sub.wants(d.t, d.ev.UserID) {
				continue
			}
			if body == nil {
				if body, err = webhook.NewPayload(d.t, d.ev, stored[d.ev.PaymentID]).Encode(); err != nil {
					return 0, err
				}
			}
			msgs = append(msgs, newMessage{Endpoint: sub.ID, Event: d.ev, Type: d.t, Payload: body, TraceParent: d.trace})
		}
	}
	n, err := s.q.enqueue(ctx, msgs)
	if err != nil {
		return 0, err
	}
	s.m.enqueued.Add(float64(n))
	return n, nil
}

// ledgerEvent is a decoded event and its webhook type.
type ledgerEvent struct {
	ev    ledger.Event
	t     webhook.Type
	trace *string // the record's traceparent (traceParent)
}

// traceParent is the traceparent of rec's receive span (kotel's, from the
// record's headers), which the message keeps for its attempts; nil when
// there is none.
func traceParent(rec *kgo.Record) *string {
	if rec.Context == nil {
		return nil
	}
	if tp := obs.TraceParent(rec.Context); tp != "" {
		return &tp
	}
	return nil
}

// signal wakes the scheduler.
func (s *Service) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// claimBatch bounds one claim.
const claimBatch = 500

// schedule claims due messages while there is room and starts their
// attempts, until ctx ends.
func (s *Service) schedule(ctx context.Context) {
	t := time.NewTimer(s.cfg.PollInterval)
	defer t.Stop()
	for {
		full := false
		if free, skip := s.room(); free > 0 {
			n := min(free, claimBatch)
			got, err := s.q.claim(ctx, n, skip, s.cfg.Lease)
			if err != nil && ctx.Err() == nil {
				s.logger.ErrorContext(ctx, "claim webhook messages", "err", err)
			}
			s.start(ctx, got)
			full = len(got) == n
		}
		if full {
			continue
		}
		t.Reset(s.cfg.PollInterval)
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		case <-t.C:
		}
	}
}

// room returns how many attempts may start and the endpoints that may not
// take one now: at their bound, their breaker open, or half-open with an
// attempt still in flight (the breaker lets one probe through; claiming
// the endpoint's other lanes' heads would only lease and release them on
// every claim while the probe hangs).
func (s *Service) room() (int, []uuid.UUID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var skip []uuid.UUID
	for id, st := range s.endpoints {
		state := st.cb.State()
		if st.inFlight >= s.cfg.EndpointConcurrency || state == gobreaker.StateOpen ||
			(state == gobreaker.StateHalfOpen && st.inFlight > 0) {
			skip = append(skip, id)
		}
	}
	return s.cfg.MaxInFlight - s.inFlight, skip
}

func (s *Service) endpoint(id uuid.UUID) *endpointState {
	st, ok := s.endpoints[id]
	if !ok {
		failures := s.cfg.BreakerFailures
		st = &endpointState{cb: gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
			Name:        id.String(),
			MaxRequests: 1,
			Timeout:     s.cfg.BreakerOpen,
			ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= failures },
			OnStateChange: func(name string, from, to gobreaker.State) {
				s.logger.Info("webhook endpoint breaker", "endpoint_id", name, "from", from.String(), "to", to.String())
				s.m.breaker.WithLabelValues(to.String()).Inc()
			},
		}), http: s.cfg.Policy.Client(s.cfg.Timeout, s.cfg.EndpointConcurrency)}
		s.endpoints[id] = st
	}
	return st
}

// start launches an attempt for each claimed message whose endpoint has
// room and a closed (or probing) breaker, and gives the others back.
func (s *Service) start(ctx context.Context, got []claimed) {
	var back []int64
	for _, c := range got {
		s.mu.Lock()
		st := s.endpoint(c.EndpointID)
		var done func(error)
		var err error
		if st.inFlight < s.cfg.EndpointConcurrency {
			done, err = st.cb.Allow()
		}
		if done == nil || err != nil {
			s.mu.Unlock()
			back = append(back, c.ID)
			continue
		}
		st.inFlight++
		s.inFlight++
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.deliver(ctx, c, st.http, done)
			s.mu.Lock()
			st.inFlight--
			s.inFlight--
			s.mu.Unlock()
			s.signal()
		}()
	}
	if len(back) > 0 {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := s.q.release(rctx, back); err != nil {
			s.logger.ErrorContext(ctx, "release webhook messages", "err", err)
		}
	}
}

// errNotSuccess tells the breaker an attempt failed.
var errNotSuccess = errors.New("not a 2xx")

// deliver makes one attempt of c and has it recorded. A stop of ctx does
// not cut the attempt short: it ends within Timeout and its outcome is
// kept. It returns once the writer recorded it (or gave up: the lease then
// runs out and the message is sent again, at least once).
func (s *Service) deliver(ctx context.Context, c claimed, client *http.Client, done func(error)) {
	// One span per attempt, child of the event's stored trace context, so
	// a payment's trace ends with its webhooks, retries included (an
	// attempt a day later is still the same payment's). The request does
	// not carry a traceparent: our trace ids stay ours.
	if c.TraceParent != nil {
		ctx = obs.WithTraceParent(ctx, *c.TraceParent)
	}
	ctx, span := s.tracer.Start(ctx, spanAttempt, trace.WithSpanKind(trace.SpanKindClient))
	defer span.End()
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.Timeout)
	a := s.send(actx, client, c)
	cancel()
	ok := a.Err == "" && a.Status >= 200 && a.Status < 300
	if span.IsRecording() {
		span.SetAttributes(attribute.Int64("payment_id", c.PaymentID), attribute.Int64("user_id", c.UserID),
			attribute.Int64("webhook.message_id", c.ID), attribute.String("webhook.endpoint_id", c.EndpointID.String()),
			attribute.String("webhook.event_id", c.EventID), attribute.Int("webhook.attempt", c.Attempts+1),
			attribute.Int("http.response.status_code", a.Status))
		if !ok {
			span.SetStatus(codes.Error, a.errText())
		}
	}
	if ok {
		done(nil)
	} else {
		done(errNotSuccess)
	}
	v, next := s.decide(c, a, ok)
	if v == givenUp {
		if err := s.deadLetter(ctx, c, a); err != nil {
			s.logger.ErrorContext(ctx, "webhook dlq", "message_id", c.ID, "endpoint_id", c.EndpointID,
				"payment_id", c.PaymentID, "user_id", c.UserID, "err", err)
			v, next = retry, time.Now().Add(s.cfg.Timeout)
		}
	}
	r := &result{c: c, a: a, v: v, next: next, done: make(chan struct{})}
	s.results <- r
	<-r.done
}

// spanAttempt names the span of one webhook attempt.
const spanAttempt = "webhook attempt"

// result is a finished attempt on its way to the database.
type result struct {
	c    claimed
	a    attempt
	v    verdict
	next time.Time
	// done is closed once the writer recorded it (or gave up).
	done chan struct{}
}

// maxWriteBatch bounds the attempts recorded in one transaction.
const maxWriteBatch = 256

// writeResults records finished attempts until results is closed: it
// takes one, then whatever else has finished meanwhile (up to
// maxWriteBatch), and writes them in one transaction, so that a burst of
// attempts costs a few transactions instead of one each. Under light load
// a batch is one attempt, written at once.
func (s *Service) writeResults(ctx context.Context) {
	batch := make([]*result, 0, maxWriteBatch)
	for r := range s.results {
		batch = append(batch[:0], r)
	fill:
		for len(batch) < maxWriteBatch {
			select {
			case r, ok := <-s.results:
				if !ok {
					break fill
				}
				batch = append(batch, r)
			default:
				break fill
			}
		}
		s.record(ctx, batch)
	}
}

// record writes batch with bounded retries and reports each result.
func (s *Service) record(ctx context.Context, batch []*result) {
	fctx, fcancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer fcancel()
	fin := make([]finished, len(batch))
	for i, r := range batch {
		fin[i] = finished{c: r.c, a: r.a, v: r.v, next: r.next}
	}
	var disabled []bool
	err := backoff.Retry(func() error {
		var err error
		disabled, err = s.q.finish(fctx, fin)
		return err
	}, backoff.WithContext(backoff.NewExponentialBackOff(), fctx))
	for i, r := range batch {
		if err != nil {
			// The lease runs out and the message is sent again: at least once.
			s.logger.ErrorContext(ctx, "record webhook attempt", "message_id", r.c.ID, "endpoint_id", r.c.EndpointID,
				"payment_id", r.c.PaymentID, "user_id", r.c.UserID, "err", err)
			close(r.done)
			continue
		}
		s.m.attempts.WithLabelValues(r.v.String()).Inc()
		s.m.latency.Observe(r.a.Latency.Seconds())
		if disabled[i] {
			// The operational event: an endpoint was switched off by the service.
			s.m.disabled.WithLabelValues(r.v.String()).Inc()
			s.logger.WarnContext(ctx, "webhook endpoint disabled", "endpoint_id", r.c.EndpointID, "reason", disableReason(r.v),
				"event_id", r.c.EventID, "status", r.a.Status, "err", r.a.Err)
			s.opsEvent(ctx, r.c, r.a, r.v)
		}
		close(r.done)
	}
}

// opsEvent publishes the operational event of an endpoint disabled by
// attempt a of c. The endpoint is already disabled: a record that cannot be
// produced within its retries is logged, and the log line and metric stand.
func (s *Service) opsEvent(ctx context.Context, c claimed, a attempt, v verdict) {
	reason := "failing"
	if v == gone {
		reason = "gone"
	}
	b, err := json.Marshal(OpsEvent{Type: OpsEndpointDisabled, EndpointID: c.EndpointID, Reason: reason,
		EventID: c.EventID, Status: a.Status, LastError: a.errText(), At: time.Now().UTC()})
	if err != nil {
		return
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	rec := &kgo.Record{Topic: s.cfg.OpsTopic, Key: []byte(c.EndpointID.String()), Value: b}
	if err := s.cl.ProduceSync(pctx, rec).FirstErr(); err != nil {
		s.logger.ErrorContext(ctx, "webhook ops event", "topic", s.cfg.OpsTopic, "endpoint_id", c.EndpointID, "err", err)
	}
}

func disableReason(v verdict) string {
	if v == gone {
		return "gone: the endpoint answered 410"
	}
	return "failing: retries spent and nothing delivered since the message was made"
}

func (v verdict) String() string {
	switch v {
	case delivered:
		return "delivered"
	case retry:
		return "retry"
	case givenUp:
		return "given_up"
	default:
		return "gone"
	}
}

// decide returns what attempt a means for c.
func (s *Service) decide(c claimed, a attempt, ok bool) (verdict, time.Time) {
	switch {
	case ok:
		return delivered, time.Time{}
	case a.Status == http.StatusGone:
		return gone, time.Time{}
	case c.Attempts+1 >= len(s.cfg.Schedule):
		return givenUp, time.Time{}
	}
	return retry, time.Now().Add(s.cfg.Schedule[c.Attempts+1])
}

// drainLimit bounds what is read of an answer beyond the logged bytes, so
// that the connection can be reused; a longer answer closes it.
const drainLimit = 64 << 10

// send makes the HTTP request.
func (s *Service) send(ctx context.Context, client *http.Client, c claimed) attempt {
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL, bytes.NewReader(c.Payload))
	if err != nil {
		return attempt{Err: fmt.Sprintf("request: %v", err)}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "finance-webhooks/1")
	webhook.SetHeaders(req.Header, c.EventID, start, c.Payload, c.Secrets...)
	resp, err := client.Do(req)
	if err != nil {
		return attempt{Latency: time.Since(start), Err: errText(err)}
	}
	defer resp.Body.Close()
	head, _ := io.ReadAll(io.LimitReader(resp.Body, int64(s.cfg.ResponseLogBytes)))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, drainLimit))
	return attempt{Status: resp.StatusCode, Latency: time.Since(start), Response: string(head)}
}

// errText is an attempt's error without the request's URL, which may carry
// a token of the receiver's in its query.
func errText(err error) string {
	var ue interface{ Unwrap() error }
	if errors.As(err, &ue) {
		if inner := ue.Unwrap(); inner != nil {
			return inner.Error()
		}
	}
	return err.Error()
}

// deadLetter publishes a given-up message to the webhook DLQ topic.
func (s *Service) deadLetter(ctx context.Context, c claimed, a attempt) error {
	v, err := json.Marshal(struct {
		MessageID  int64           `json:"message_id"`
		EndpointID uuid.UUID       `json:"endpoint_id"`
		UserID     int64           `json:"user_id"`
		EventID    string          `json:"event_id"`
		Type       string          `json:"type"`
		Attempts   int             `json:"attempts"`
		LastError  string          `json:"last_error"`
		Payload    json.RawMessage `json:"payload"`
	}{c.ID, c.EndpointID, c.UserID, c.EventID, c.EventType, c.Attempts + 1, a.errText(), c.Payload})
	if err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	rec := &kgo.Record{Topic: s.cfg.DLQTopic, Key: kafka.UserKey(c.UserID), Value: v}
	if err := s.cl.ProduceSync(pctx, rec).FirstErr(); err != nil {
		return fmt.Errorf("produce %s: %w", s.cfg.DLQTopic, err)
	}
	s.m.dlq.Inc()
	return nil
}
