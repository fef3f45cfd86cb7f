package obs

import (
	"context"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/trace"
)

// TestLogLinesCarryTheTraceID: a line logged with a context holding a span
// has its trace_id and span_id; one without has neither.
func TestLogLinesCarryTheTraceID(t *testing.T) {
	t.Parallel()
	var out syncBuffer
	logger, err := NewLogger(&out, "info", "svc")
	if err != nil {
		t.Fatal(err)
	}
	ctx := WithTraceParent(context.Background(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
	logger.With("payment_id", 7).InfoContext(ctx, "with span")
	logger.InfoContext(context.Background(), "without span")

	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("want 2 lines, got:\n%s", out.String())
	}
	for _, s := range []string{`"payment_id":7`, `"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"`, `"span_id":"00f067aa0ba902b7"`} {
		if !strings.Contains(lines[0], s) {
			t.Errorf("line with a span lacks %s: %s", s, lines[0])
		}
	}
	if strings.Contains(lines[1], "trace_id") {
		t.Errorf("line without a span has a trace_id: %s", lines[1])
	}
	if LevelOf(logger) == nil {
		t.Error("the trace handler hides the level variable")
	}
}

// TestTraceParentRoundTrip: what TraceParent writes, WithTraceParent reads
// back as the same remote span context; nothing or garbage reads as none.
func TestTraceParentRoundTrip(t *testing.T) {
	t.Parallel()
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	ctx := WithTraceParent(context.Background(), tp)
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsRemote() || !sc.IsSampled() || sc.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("WithTraceParent(%q) = %v", tp, sc)
	}
	if got := TraceParent(ctx); got != tp {
		t.Errorf("TraceParent = %q, want %q", got, tp)
	}
	for _, bad := range []string{"", "00-zz-00f067aa0ba902b7-01", "garbage"} {
		if got := TraceParent(WithTraceParent(context.Background(), bad)); got != "" {
			t.Errorf("TraceParent after WithTraceParent(%q) = %q, want none", bad, got)
		}
	}
}

// TestSamplerFromEnv: the default is parent-based at DefaultSampleRatio;
// the standard names and a ratio are read; bad values are refused.
func TestSamplerFromEnv(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		sampler, arg, want string
	}{
		{"", "", "ParentBased{root:TraceIDRatioBased{0.01}"},
		{"parentbased_traceidratio", "0.25", "ParentBased{root:TraceIDRatioBased{0.25}"},
		{"traceidratio", "1", "TraceIDRatioBased{1}"},
		{"always_on", "", "AlwaysOnSampler"},
		{"parentbased_always_off", "", "ParentBased{root:AlwaysOffSampler"},
	} {
		env := map[string]string{envSampler: tc.sampler, envSamplerArg: tc.arg}
		_, desc, err := samplerFromEnv(func(k string) string { return env[k] })
		if err != nil || !strings.HasPrefix(desc, tc.want) {
			t.Errorf("sampler %q arg %q: %q, %v; want %s...", tc.sampler, tc.arg, desc, err, tc.want)
		}
	}
	for _, env := range []map[string]string{
		{envSampler: "sometimes"},
		{envSamplerArg: "2"},
		{envSamplerArg: "a tenth"},
	} {
		if _, _, err := samplerFromEnv(func(k string) string { return env[k] }); err == nil {
			t.Errorf("%v accepted", env)
		}
	}
}
