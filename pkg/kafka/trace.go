package kafka

import (
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kotel"
	"go.opentelemetry.io/otel/propagation"
)

// traceHooks returns the option that traces a client's records through
// franz-go's kotel plugin, with OpenTelemetry's global tracer provider
// (obs.StartTracing installs it) and the W3C tracecontext format: a
// produced record gets a "<topic> publish" span, child of the record's Context, and that span's
// traceparent in its headers; a fetched record gets a "<topic> receive"
// span, child of the traceparent in its headers, and its Context holds that
// span, so a consumer starts its own spans from record.Context and the
// payment's trace goes on. Without obs.StartTracing the global provider
// makes no spans of its own, and a record carries on the context it was
// given.
func traceHooks() kgo.Opt {
	return kgo.WithHooks(kotel.NewKotel(kotel.WithTracer(kotel.NewTracer(kotel.TracerPropagator(propagation.TraceContext{})))).Hooks()...)
}
