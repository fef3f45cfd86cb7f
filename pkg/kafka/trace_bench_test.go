package kafka_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/finsvc/finance/pkg/kafka"
	"github.com/finsvc/finance/pkg/obs"
)

// kotelHooks are the per-record hooks kotel implements.
type kotelHooks interface {
	kgo.HookProduceRecordBuffered
	kgo.HookProduceRecordUnbuffered
	kgo.HookFetchRecordBuffered
	kgo.HookFetchRecordUnbuffered
}

// kotelOf returns the kotel hooks of a client made by kafka.NewClient,
// made now, so that they use the tracer provider installed now.
func kotelOf(b testing.TB) kotelHooks {
	b.Helper()
	cl, err := kafka.NewClient([]string{"127.0.0.1:1"}, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(cl.Close)
	for _, h := range cl.OptValues(kgo.WithHooks) {
		for _, hh := range h.([]kgo.Hook) {
			if k, ok := hh.(kotelHooks); ok {
				return k
			}
		}
	}
	b.Fatal("no kotel hook on the client")
	return nil
}

// okTransport answers every request 200 without a network.
type okTransport struct{}

func (okTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: 200, Body: http.NoBody, Header: http.Header{}, Request: r}, nil
}

// BenchmarkTracesPerPayment is the CPU traces add to one payment, the
// tracing work of every hop done as the services do it, with the real SDK,
// kotel hooks and otelhttp transport: the gateway's request span and the
// traceparent it stores in the outbox; 6 produces (the relay's request and
// accepted event, the dispatcher's processing and final outcomes, the
// status consumer's 2 events) and 9 fetches (dispatcher 1, status consumer
// 2, gateway push 3, webhook delivery 3), each a kotel span; the dispatch
// span and its processor call through otelhttp; 2 apply spans, 3 push spans
// and 1 webhook attempt from its stored traceparent. Export goes to an
// OTLP/HTTP receiver in this process that reads and drops the bodies.
// cpu-ns/op is the process's CPU (getrusage) per payment, the batch
// exporter's goroutine included. docs/operations.md#traces reports it:
//
//	go test -run '^$' -bench 'TracesPerPayment' -benchmem -count 3 ./pkg/kafka/
func BenchmarkTracesPerPayment(b *testing.B) {
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	b.Cleanup(collector.Close)
	for _, tc := range []struct {
		name string
		env  map[string]string
	}{
		// What every service does unless told to export: IDs, no recording.
		{"no-exporter", map[string]string{}},
		// Export on, the default sampler: parentbased_traceidratio 0.01.
		{"export-ratio-0.01", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": collector.URL}},
		// Every payment recorded and exported.
		{"export-ratio-1", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": collector.URL, "OTEL_TRACES_SAMPLER_ARG": "1"}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			for k, v := range tc.env {
				b.Setenv(k, v) // the exporter reads the process environment
			}
			stop, err := obs.StartTracing(context.Background(), slog.New(slog.DiscardHandler), "bench",
				func(k string) string { return tc.env[k] })
			if err != nil {
				b.Fatal(err)
			}
			hooks := kotelOf(b)
			tracer := otel.Tracer("bench")
			client := &http.Client{Transport: otelhttp.NewTransport(okTransport{})}
			log := slog.New(slog.DiscardHandler)

			var before syscall.Rusage
			_ = syscall.Getrusage(syscall.RUSAGE_SELF, &before)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				tracePayment(hooks, tracer, client, log)
			}
			b.StopTimer()
			stop() // flushes: the export of the last spans counts too
			var after syscall.Rusage
			_ = syscall.Getrusage(syscall.RUSAGE_SELF, &after)
			cpu := time.Duration(after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano())
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
}

// tracePayment does one payment's tracing work as the services do it (see
// BenchmarkTracesPerPayment): the gateway's request span, the relay's
// produces from the stored traceparent, the dispatcher's receive, dispatch
// span, processor call and outcomes, the status consumer's applies and
// events, the gateway push and webhook delivery of every event and the
// final one's webhook attempt. hooks are a client's kotel hooks.
func tracePayment(hooks kotelHooks, tracer trace.Tracer, client *http.Client, log *slog.Logger) {
	produce := func(ctx context.Context, topic string) *kgo.Record {
		r := &kgo.Record{Topic: topic, Key: []byte("3456"), Value: []byte("payload"), Context: ctx}
		hooks.OnProduceRecordBuffered(r)
		hooks.OnProduceRecordUnbuffered(r, nil)
		return r
	}
	fetch := func(produced *kgo.Record) *kgo.Record {
		r := &kgo.Record{Topic: produced.Topic, Key: produced.Key, Value: produced.Value, Headers: produced.Headers}
		hooks.OnFetchRecordBuffered(r)
		hooks.OnFetchRecordUnbuffered(r, true)
		return r
	}
	child := func(rec *kgo.Record, name string) (context.Context, trace.Span) {
		return tracer.Start(trace.ContextWithSpanContext(context.Background(), trace.SpanContextFromContext(rec.Context)), name)
	}

	// Gateway: the request span; its traceparent goes into the outbox.
	hdr := http.Header{}
	ctx := propagation.TraceContext{}.Extract(context.Background(), propagation.HeaderCarrier(hdr))
	ctx, span := tracer.Start(ctx, "POST /v1/payments", trace.WithSpanKind(trace.SpanKindServer))
	tp := obs.TraceParent(ctx)
	span.End()

	// Relay: both outbox rows, as children of the stored context.
	requested := produce(obs.WithTraceParent(context.Background(), tp), kafka.TopicRequested)
	accepted := produce(obs.WithTraceParent(context.Background(), tp), kafka.TopicEvents)

	// Dispatcher: receive, dispatch, the processor call, two outcomes.
	rec := fetch(requested)
	dctx, dspan := child(rec, "dispatch payment")
	req, _ := http.NewRequestWithContext(dctx, http.MethodPost, "http://processor/payments", strings.NewReader("{}"))
	if resp, err := client.Do(req); err == nil {
		resp.Body.Close()
	}
	processing := produce(trace.ContextWithSpanContext(context.Background(), dspan.SpanContext()), kafka.TopicOutcomes)
	final := produce(trace.ContextWithSpanContext(context.Background(), dspan.SpanContext()), kafka.TopicOutcomes)
	dspan.End()

	// Status consumer: two outcomes applied, two events produced.
	var events []*kgo.Record
	for _, out := range []*kgo.Record{processing, final} {
		actx, aspan := child(fetch(out), "apply outcome")
		log.DebugContext(actx, "outcome applied")
		events = append(events, produce(actx, kafka.TopicEvents))
		aspan.End()
	}
	events = append(events, accepted)

	// Gateway push and webhook delivery: every event fetched by
	// both; the final one makes a webhook attempt.
	for _, ev := range events {
		_, pspan := child(fetch(ev), "push event")
		pspan.End()
		wrec := fetch(ev)
		if ev == events[1] {
			stored := obs.TraceParent(wrec.Context)
			_, wspan := tracer.Start(obs.WithTraceParent(context.Background(), stored), "webhook attempt")
			wspan.End()
		}
	}
}
