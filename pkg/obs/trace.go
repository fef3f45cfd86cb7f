package obs

// Traces: one OpenTelemetry setup for every service (docs/operations.md#traces).
//
// StartTracing installs the process's TracerProvider and the W3C
// tracecontext propagator as OpenTelemetry's globals, which is where the
// instrumentation libraries we use look for them (franz-go's kotel hooks,
// otelhttp's transport) and where each component takes its tracer
// (otel.Tracer). Every span gets IDs, sampled or not, so a trace_id reaches
// the logs and the Kafka headers of every payment; only sampled spans are
// recorded and exported.

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// DefaultSampleRatio is the share of new traces sampled when
// OTEL_TRACES_SAMPLER is not set: parentbased_traceidratio at 0.01.
const DefaultSampleRatio = 0.01

// The standard OpenTelemetry settings StartTracing reads. The exporter
// itself also reads the other OTEL_EXPORTER_OTLP_* settings (headers,
// timeout, ...) and the batch span processor the OTEL_BSP_* ones.
const (
	envSampler        = "OTEL_TRACES_SAMPLER"
	envSamplerArg     = "OTEL_TRACES_SAMPLER_ARG"
	envEndpoint       = "OTEL_EXPORTER_OTLP_ENDPOINT"
	envTracesEndpoint = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
)

// StartTracing sets up traces for service from the standard OpenTelemetry
// environment, installs them as OpenTelemetry's globals, logs one "traces"
// line saying how, and returns the function that flushes what is still
// buffered and stops the exporter (call it, deferred, before run returns):
//
//   - spans are exported over OTLP/HTTP only when OTEL_EXPORTER_OTLP_ENDPOINT
//     or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set. Without an exporter no
//     new trace is sampled (recording what nobody receives costs CPU), but
//     every span still has IDs, so logs and Kafka headers carry a trace_id,
//     and a trace sampled upstream stays sampled downstream;
//   - OTEL_TRACES_SAMPLER (always_on, always_off, traceidratio,
//     parentbased_always_on, parentbased_always_off,
//     parentbased_traceidratio) and OTEL_TRACES_SAMPLER_ARG (the ratio)
//     choose the sampler; the default is parentbased_traceidratio at
//     DefaultSampleRatio;
//   - the W3C tracecontext propagator carries the context across HTTP
//     requests and Kafka headers.
func StartTracing(ctx context.Context, logger *slog.Logger, service string, getenv func(string) string) (stop func(), err error) {
	sampler, desc, err := samplerFromEnv(getenv)
	if err != nil {
		return nil, err
	}
	res, err := resource.Merge(resource.Default(),
		resource.NewSchemaless(attribute.String("service.name", service)))
	if err != nil {
		return nil, fmt.Errorf("trace resource: %w", err)
	}
	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	exporting := getenv(envEndpoint) != "" || getenv(envTracesEndpoint) != ""
	if exporting {
		exp, err := otlptracehttp.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("otlp trace exporter: %w", err)
		}
		opts = append(opts, sdktrace.WithBatcher(exp), sdktrace.WithSampler(sampler))
	} else {
		// Parent-based, so a sampled parent from upstream is still honoured.
		opts = append(opts, sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.NeverSample())))
		desc = "no exporter, so no new trace is sampled (" + desc + " once an OTLP endpoint is set)"
	}
	tp := sdktrace.NewTracerProvider(opts...)
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	logger.InfoContext(ctx, "traces", "exporting", exporting, "sampler", desc)
	return func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := tp.Shutdown(sctx); err != nil {
			logger.WarnContext(sctx, "flush traces", "err", err)
		}
	}, nil
}

// samplerFromEnv reads OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG.
func samplerFromEnv(getenv func(string) string) (sdktrace.Sampler, string, error) {
	name := strings.ToLower(strings.TrimSpace(getenv(envSampler)))
	if name == "" {
		name = "parentbased_traceidratio"
	}
	ratio := DefaultSampleRatio
	if arg := strings.TrimSpace(getenv(envSamplerArg)); arg != "" && strings.HasSuffix(name, "traceidratio") {
		r, err := strconv.ParseFloat(arg, 64)
		if err != nil || r < 0 || r > 1 {
			return nil, "", fmt.Errorf("%s %q: want a ratio from 0 to 1", envSamplerArg, arg)
		}
		ratio = r
	}
	var s sdktrace.Sampler
	switch name {
	case "always_on":
		s = sdktrace.AlwaysSample()
	case "always_off":
		s = sdktrace.NeverSample()
	case "traceidratio":
		s = sdktrace.TraceIDRatioBased(ratio)
	case "parentbased_always_on":
		s = sdktrace.ParentBased(sdktrace.AlwaysSample())
	case "parentbased_always_off":
		s = sdktrace.ParentBased(sdktrace.NeverSample())
	case "parentbased_traceidratio":
		s = sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))
	default:
		return nil, "", fmt.Errorf("%s %q: want always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off or parentbased_traceidratio", envSampler, name)
	}
	return s, s.Description(), nil
}

// traceParentKey is the W3C header (and Kafka header, and stored column)
// that carries a span context.
const traceParentKey = "traceparent"

// oneHeader is a propagation.TextMapCarrier of the traceparent header
// alone, so that turning a span context into a string and back allocates
// no map.
type oneHeader struct{ value string }

func (c *oneHeader) Get(key string) string {
	if key == traceParentKey {
		return c.value
	}
	return ""
}

func (c *oneHeader) Set(key, value string) {
	if key == traceParentKey {
		c.value = value
	}
}

func (c *oneHeader) Keys() []string { return []string{traceParentKey} }

// TraceParent returns the W3C traceparent of the span in ctx
// ("00-<trace id>-<span id>-<flags>"), or "" when ctx has none. It is what
// a record stored for later (an outbox row, a webhook message) keeps of
// the context that made it.
func TraceParent(ctx context.Context) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return ""
	}
	var c oneHeader
	propagation.TraceContext{}.Inject(ctx, &c)
	return c.value
}

// WithTraceParent returns ctx carrying the remote span context of tp (made
// by TraceParent); spans started from it are its children. An empty or
// malformed tp returns ctx unchanged.
func WithTraceParent(ctx context.Context, tp string) context.Context {
	if tp == "" {
		return ctx
	}
	c := oneHeader{value: tp}
	return propagation.TraceContext{}.Extract(ctx, &c)
}

// traceHandler adds trace_id and span_id to every line logged with a
// context that holds a span, so that a payment's lines in every service
// can be found by its trace (and a trace from its lines).
type traceHandler struct {
	slog.Handler
}

func (h traceHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	return h.Handler.Handle(ctx, r)
}

func (h traceHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return traceHandler{Handler: h.Handler.WithAttrs(attrs)}
}

func (h traceHandler) WithGroup(name string) slog.Handler {
	return traceHandler{Handler: h.Handler.WithGroup(name)}
}
