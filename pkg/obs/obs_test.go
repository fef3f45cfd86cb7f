package obs

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/finsvc/finance/pkg/envconfig"
)

func TestQuietKafka(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		level    string
		wantInfo bool
	}{
		{"info", false},
		{"debug", true},
	} {
		var buf bytes.Buffer
		logger, err := NewLogger(&buf, tc.level, "svc")
		if err != nil {
			t.Fatal(err)
		}
		q := QuietKafka(logger, tc.level).With("client", "kafka")
		q.Info("begin transaction")
		q.Warn("rebalance failed")
		out := buf.String()
		if got := strings.Contains(out, "begin transaction"); got != tc.wantInfo {
			t.Errorf("level %s: info logged = %v, want %v:\n%s", tc.level, got, tc.wantInfo, out)
		}
		if !strings.Contains(out, `"client":"kafka"`) || !strings.Contains(out, "rebalance failed") {
			t.Errorf("level %s: the warning or its attributes are lost:\n%s", tc.level, out)
		}
	}
}

// secretConfig stands for a service's config: its LogValue masks the secret.
type secretConfig struct{ secret envconfig.Secret }

func (c secretConfig) LogValue() slog.Value {
	return slog.GroupValue(slog.Any("secret", c.secret))
}

func TestStartLogsConfigAndDeprecations(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	ops := envconfig.Ops{LogLevel: "info", ShutdownTimeout: time.Second, Deprecated: []string{"OLD is deprecated"}}
	if _, err := Start(context.Background(), &buf, "svc", ops, secretConfig{secret: "hunter2"}); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if strings.Contains(out, "hunter2") {
		t.Fatalf("the secret is logged: %s", out)
	}
	for _, want := range []string{`"msg":"starting"`, `"secret":"REDACTED"`, `"service":"svc"`, `"level":"WARN","msg":"OLD is deprecated"`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s:\n%s", want, out)
		}
	}
	if _, err := Start(context.Background(), &buf, "svc", envconfig.Ops{LogLevel: "loud"}, secretConfig{}); err == nil {
		t.Error("a bad level is accepted")
	}
}
