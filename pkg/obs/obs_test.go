package obs

import (
	"bytes"
	"strings"
	"testing"
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
