package progress_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/finsvc/finance/loadtest/internal/loadgen"
	"github.com/finsvc/finance/loadtest/internal/progress"
)

func TestPlainLine(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	l := progress.New(&b, "burst→pipeline")
	s := loadgen.Status{Phase: "load", Elapsed: 3 * time.Second, Total: 10 * time.Second, Sent: 120, OK: 100, Failed: 2,
		InFlight: 18, WriteP99: 45, Backlog: 80, Unknown: 3, ProcRate: 299, Limit: 300}
	l.Update(s)
	l.Update(s) // within 5 s of the first: not printed again
	l.Finish()
	want := "[    3s] burst→pipeline load: sent 120 ok 100 failed 2 in-flight 18 | p99 write 45ms read - | backlog 80 (+3 unknown) | processor 299/s of L=300\n"
	if got := b.String(); got != want {
		t.Errorf("progress line\n got %q\nwant %q", got, want)
	}
	if d := progress.Describe(loadgen.Status{WriteP99: 1500}); !strings.Contains(d, "p99 write 1.5s") {
		t.Errorf("Describe = %q", d)
	}
}
