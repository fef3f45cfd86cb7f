package cli

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/finsvc/finance/loadtest/internal/reads"
)

// TestHostileProcess runs the hostile client as a process of its own (the
// test binary's hostile-client command, see TestMain) against a fake
// gateway that refuses everything: it sends only in the hostile phase and
// reports every answer.
func TestHostileProcess(t *testing.T) {
	t.Setenv("LOADTEST_CLI_TEST_AS_BINARY", "1")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusUnauthorized)
	}))
	t.Cleanup(srv.Close)
	cfg := reads.HostileDefaults()
	cfg.URL, cfg.FirstUser, cfg.Users, cfg.Accounts = srv.URL, 100, 10, 3
	cfg.HostileRate, cfg.HostileConns, cfg.Phases, cfg.Phase = 200, 32, 2, time.Second
	cfg.Secret, cfg.RunID = []byte("secret"), "t"
	var stderr bytes.Buffer
	side, err := runHostileProcess(context.Background(), os.Args[0], cfg, time.Now().Add(time.Second), &stderr)
	if err != nil {
		t.Fatalf("%v; stderr: %s", err, stderr.String())
	}
	// A request due while every connection is busy is skipped: on a
	// loaded machine some are, but each of the 200 due is one or the other.
	if len(side.Sent) != 2 || side.Sent[0]+side.Skipped[0] != 0 || side.Sent[1] == 0 ||
		side.Sent[1]+side.Skipped[1] != 200 {
		t.Errorf("sent %v and skipped %v per phase, want none, then 200 together", side.Sent, side.Skipped)
	}
	var answered int64
	for _, k := range reads.HostileKinds {
		answered += side.Answers[k]["401"]
	}
	if answered != side.Sent[1] || side.CPUSeconds <= 0 {
		t.Errorf("%d answers of %d sent (%v); CPU %v s", answered, side.Sent[1], side.Answers, side.CPUSeconds)
	}
}
