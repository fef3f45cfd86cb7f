package main_test

// The traces test: issue 17's "one payment, one trace", over the real
// binaries. It runs the stack as make run does, with every service
// exporting its spans over OTLP/HTTP to a receiver inside the test, which
// decodes the protobuf export requests into memory. Running the binaries
// (rather than the components in one process) also checks each main's
// setup (obs.StartTracing, the Kafka hooks, otelhttp) and that the context
// survives the outbox table and the webhook queue.

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/finsvc/finance/pkg/auth"
	"github.com/finsvc/finance/pkg/stacktest"
	"github.com/finsvc/finance/pkg/testkit"
)

// span is what the test keeps of an exported span.
type span struct {
	Service, Name           string
	Trace, ID, Parent       string
	Kind                    tracepb.Span_SpanKind
	LinkedTraces, LinkedIDs []string
}

func (s span) String() string {
	return fmt.Sprintf("%s %q %s parent %s", s.Service, s.Name, s.ID, s.Parent)
}

// otlpReceiver is an OTLP/HTTP trace receiver: POST /v1/traces with a
// protobuf ExportTraceServiceRequest.
type otlpReceiver struct {
	t     *testing.T
	mu    sync.Mutex
	spans []span
}

func (o *otlpReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	var req coltrace.ExportTraceServiceRequest
	if err == nil {
		err = proto.Unmarshal(body, &req)
	}
	if r.URL.Path != "/v1/traces" || err != nil {
		o.t.Errorf("OTLP receiver: %s %s (%s): %v", r.Method, r.URL.Path, r.Header.Get("Content-Type"), err)
		http.Error(w, "bad export", http.StatusBadRequest)
		return
	}
	o.mu.Lock()
	for _, rs := range req.GetResourceSpans() {
		service := ""
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.GetKey() == "service.name" {
				service = kv.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				sp := span{Service: service, Name: s.GetName(), Kind: s.GetKind(),
					Trace: hex.EncodeToString(s.GetTraceId()), ID: hex.EncodeToString(s.GetSpanId()),
					Parent: hex.EncodeToString(s.GetParentSpanId())}
				for _, l := range s.GetLinks() {
					sp.LinkedTraces = append(sp.LinkedTraces, hex.EncodeToString(l.GetTraceId()))
					sp.LinkedIDs = append(sp.LinkedIDs, hex.EncodeToString(l.GetSpanId()))
				}
				o.spans = append(o.spans, sp)
			}
		}
	}
	o.mu.Unlock()
	out, _ := proto.Marshal(&coltrace.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

// trace returns the spans received of traceID.
func (o *otlpReceiver) trace(traceID string) []span {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []span
	for _, s := range o.spans {
		if s.Trace == traceID {
			out = append(out, s)
		}
	}
	return out
}

// hop is one step of a payment's trace: a span of service named name whose
// parent is a span of parentService named parentName.
type hop struct {
	service, name, parentService, parentName string
}

// paymentHops is the path of a payment that succeeds and has a webhook
// receiver: every hop must hold in its trace.
var paymentHops = []hop{
	{"outbox-relay", "payments.requested publish", "gateway", "POST /v1/payments"},
	{"dispatcher", "payments.requested receive", "outbox-relay", "payments.requested publish"},
	{"dispatcher", "dispatch payment", "dispatcher", "payments.requested receive"},
	{"dispatcher", "processor call", "dispatcher", "dispatch payment"}, // otelhttp's client span, matched by kind
	{"dispatcher", "payments.outcomes publish", "dispatcher", "dispatch payment"},
	{"status-consumer", "payments.outcomes receive", "dispatcher", "payments.outcomes publish"},
	{"status-consumer", "apply outcome", "status-consumer", "payments.outcomes receive"},
	{"status-consumer", "payments.events publish", "status-consumer", "apply outcome"},
	{"gateway", "payments.events receive", "status-consumer", "payments.events publish"},
	{"gateway", "push event", "gateway", "payments.events receive"},
	{"webhook-delivery", "payments.events receive", "status-consumer", "payments.events publish"},
	{"webhook-delivery", "webhook attempt", "webhook-delivery", "payments.events receive"},
}

// missingHops returns the hops of paymentHops that spans do not show.
func missingHops(spans []span) []hop {
	byID := map[string]span{}
	for _, s := range spans {
		byID[s.ID] = s
	}
	matches := func(s span, service, name string) bool {
		if name == "processor call" {
			return s.Service == service && s.Kind == tracepb.Span_SPAN_KIND_CLIENT && strings.Contains(s.Name, "POST")
		}
		return s.Service == service && s.Name == name
	}
	var missing []hop
	for _, h := range paymentHops {
		found := false
		for _, s := range spans {
			if p, ok := byID[s.Parent]; ok && matches(s, h.service, h.name) && matches(p, h.parentService, h.parentName) {
				found = true
				break
			}
		}
		if !found {
			missing = append(missing, h)
		}
	}
	return missing
}

// TestTracesFollowAPaymentThroughTheStack sends one payment with a sampled
// W3C traceparent (its trace id the test's) and requires the spans of every
// hop, from the gateway's request to the webhook attempt, in that one trace,
// each with its parent there too; and the gateway's log line of the
// payment carries the trace id. Any hop that drops the context starts a
// new trace, and its hop, and every later one, is then missing.
func TestTracesFollowAPaymentThroughTheStack(t *testing.T) {
	recv := &otlpReceiver{t: t}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: recv, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	env := devstackEnv(t, stacktest.Binaries(t, services...))
	env["OTEL_EXPORTER_OTLP_ENDPOINT"] = "http://" + ln.Addr().String()
	env["OTEL_BSP_SCHEDULE_DELAY"] = "100" // ms: export soon, not every 5 s
	// The default sampler (parentbased_traceidratio, 0.01) stays: the
	// request's sampled flag is what samples this payment's trace.
	d := startDevstack(t, env)
	gateway := "http://" + env["GATEWAY_ADDR"]

	hooks := make(chan string, 16)
	hookLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hookSrv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		select {
		case hooks <- string(b):
		default:
		}
		w.WriteHeader(http.StatusNoContent)
	})}
	go func() { _ = hookSrv.Serve(hookLn) }()
	t.Cleanup(func() { _ = hookSrv.Close() })
	registerReceiver(t, gateway, mintToken(t, auth.DevSecret, 1, true), "http://"+hookLn.Addr().String()+"/hooks")

	var traceID [16]byte
	var parent [8]byte
	_, _ = rand.Read(traceID[:])
	_, _ = rand.Read(parent[:])
	tid, pid := hex.EncodeToString(traceID[:]), hex.EncodeToString(parent[:])
	token, err := auth.Mint([]byte(auth.DevSecret), 3456, false, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	c := client{t: t, base: gateway, token: token}
	code, _, body := c.do("POST", "/v1/payments", map[string]int64{"user_id": 3456, "merchant_id": 4593, "amount": -500},
		map[string]string{
			"Idempotency-Key": "trace-" + strconv.FormatInt(time.Now().UnixNano(), 10),
			"traceparent":     "00-" + tid + "-" + pid + "-01",
		})
	if code != http.StatusAccepted {
		t.Fatalf("POST /v1/payments = %d %s", code, body)
	}

	var spans []span
	func() {
		// Runs on the Eventually's failure too: what was missing.
		defer func() {
			if missing := missingHops(spans); len(missing) > 0 {
				t.Logf("spans of trace %s:", tid)
				for _, s := range spans {
					t.Logf("  %v", s)
				}
				for _, h := range missing {
					t.Errorf("missing hop: %s %q, child of %s %q", h.service, h.name, h.parentService, h.parentName)
				}
			}
		}()
		testkit.EventuallyWithin(t, 2*time.Minute, "every hop of the payment's trace is exported", func() bool {
			d.running()
			spans = recv.trace(tid)
			return len(missingHops(spans)) == 0 && len(orphans(spans, pid)) == 0
		})
	}()

	// The request's span continues the caller's; every other span's parent
	// is in the trace.
	for _, s := range spans {
		if s.Service == "gateway" && s.Name == "POST /v1/payments" && s.Parent != pid {
			t.Errorf("the request's span %v: parent %s, want the caller's %s", s, s.Parent, pid)
		}
	}
	for _, s := range orphans(spans, pid) {
		t.Errorf("span %v: its parent is not in the trace", s)
	}

	// Lines about the payment carry its trace id (obs' trace handler).
	line := regexp.MustCompile(`\[gateway\][^\n]*"msg":"http request"[^\n]*"route":"/v1/payments"[^\n]*`)
	found := false
	for _, l := range line.FindAllString(d.out.String(), -1) {
		if strings.Contains(l, `"trace_id":"`+tid+`"`) && strings.Contains(l, `"payment_id":`) && strings.Contains(l, `"user_id":3456`) {
			found = true
		}
	}
	if !found {
		t.Errorf("no gateway log line of the payment carries trace_id %s", tid)
	}
	d.stop()
}

// orphans are the spans whose parent is not among spans, except the
// request's span, whose parent is the caller's (pid). Each service exports
// in its own batches, so a parent can arrive after its child: the wait
// above lasts until none is left.
func orphans(spans []span, pid string) []span {
	ids := map[string]bool{}
	for _, s := range spans {
		ids[s.ID] = true
	}
	var out []span
	for _, s := range spans {
		if s.Service == "gateway" && s.Name == "POST /v1/payments" {
			continue
		}
		if !ids[s.Parent] {
			out = append(out, s)
		}
	}
	return out
}
