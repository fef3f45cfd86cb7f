package httpapi

import (
	"log/slog"
	"net/http"

	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// tracer starts the request spans from OpenTelemetry's global provider
// (obs.StartTracing), which it follows even when set later.
var tracer = otel.Tracer("github.com/finsvc/finance/services/gateway/internal/httpapi")

// traceRequest makes each request a server span named by its route
// ("POST /v1/payments"), the root of a payment's trace: the store writes
// its context into the outbox with the payment, and from there it travels
// in Kafka headers to every later step (docs/operations.md#traces). A
// request that brings a W3C traceparent continues the caller's trace, and
// its sampled flag is honoured (parent-based sampling). It comes first, so
// every line logged with the request's context carries its trace_id. The
// ops routes are not traced.
func (a *api) traceRequest(c *gin.Context) {
	route := c.FullPath()
	switch route {
	case "/healthz", "/readyz", "/metrics":
		c.Next()
		return
	case "":
		route = "unmatched"
	}
	ctx := propagation.TraceContext{}.Extract(c.Request.Context(), propagation.HeaderCarrier(c.Request.Header))
	ctx, span := tracer.Start(ctx, c.Request.Method+" "+route, trace.WithSpanKind(trace.SpanKindServer))
	defer span.End()
	c.Request = c.Request.WithContext(ctx)

	c.Next()

	if !span.IsRecording() {
		return
	}
	status := c.Writer.Status()
	span.SetAttributes(attribute.String("http.request.method", c.Request.Method), attribute.String("http.route", route),
		attribute.Int("http.response.status_code", status))
	if v, ok := c.Get(keyPaymentLog); ok {
		for _, at := range v.([]slog.Attr) {
			switch at.Key {
			case "payment_id", "user_id":
				span.SetAttributes(attribute.Int64(at.Key, at.Value.Int64()))
			case "payment_uid":
				span.SetAttributes(attribute.String(at.Key, at.Value.String()))
			}
		}
	}
	if status >= http.StatusInternalServerError {
		span.SetStatus(codes.Error, http.StatusText(status))
	}
}
