package kafka_test

import (
	"log/slog"
	"net/http"
	"testing"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// One payment's spans, recorded by the SDK's in-memory exporter, link into
// one trace: the hops of tracePayment (the services' tracing work, the
// kotel hooks of kafka.NewClient carrying the context in record headers,
// otelhttp on the processor call, the traceparent stored in the outbox and
// with webhook messages) all share the request span's trace id, and every
// span but the request's has its parent among them. The end-to-end
// version over the real binaries and broker is devstack's
// TestTracesFollowAPaymentThroughTheStack.
func TestOnePaymentIsOneTrace(t *testing.T) {
	// Not parallel: it installs the global tracer provider, which the kotel
	// hooks take when the client is made, and restores it at the end.
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp), sdktrace.WithSampler(sdktrace.AlwaysSample()))
	prevTP, prevProp := otel.GetTracerProvider(), otel.GetTextMapPropagator()
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	t.Cleanup(func() {
		_ = tp.Shutdown(t.Context())
		otel.SetTracerProvider(prevTP)
		otel.SetTextMapPropagator(prevProp)
	})

	tracePayment(kotelOf(t), otel.Tracer("test"), &http.Client{Transport: otelhttp.NewTransport(okTransport{})},
		slog.New(slog.DiscardHandler))

	spans := exp.GetSpans()
	// 1 request, 6 produces, 9 fetches, dispatch, processor call, 2 applies,
	// 3 pushes, 1 webhook attempt.
	if len(spans) != 24 {
		t.Errorf("%d spans, want 24", len(spans))
	}
	byID := map[string]bool{}
	names := map[string]int{}
	for _, s := range spans {
		byID[s.SpanContext.SpanID().String()] = true
		names[s.Name]++
	}
	var root tracetest.SpanStub
	for _, s := range spans {
		if s.Name == "POST /v1/payments" {
			root = s
		}
	}
	if !root.SpanContext.IsValid() {
		t.Fatalf("no request span among %v", names)
	}
	for _, s := range spans {
		if s.SpanContext.TraceID() != root.SpanContext.TraceID() {
			t.Errorf("span %q is in trace %s, not the request's %s", s.Name, s.SpanContext.TraceID(), root.SpanContext.TraceID())
		}
		if s.Name == root.Name {
			continue
		}
		if !s.Parent.IsValid() || !byID[s.Parent.SpanID().String()] {
			t.Errorf("span %q has parent %s, which is not one of the payment's spans", s.Name, s.Parent.SpanID())
		}
	}
	for _, n := range []string{"dispatch payment", "apply outcome", "push event", "webhook attempt"} {
		if names[n] == 0 {
			t.Errorf("no %q span among %v", n, names)
		}
	}
}
