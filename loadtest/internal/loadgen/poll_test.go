package loadgen

import (
	"math"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/finsvc/finance/pkg/payment"
	"github.com/finsvc/finance/pkg/simclient"
)

func TestPollStats(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	// 100 payments executed one every 10 ms from 0.1 s; payment i's final
	// status is written (i+1) ms after its execution and seen by a poll
	// 500 ms after that. Payment 100 was declined (no execution) and
	// payment 101 was never seen final.
	var polls []Poll
	var execs []simclient.Execution
	for i := range 100 {
		uid := uuid.New()
		at := start.Add(100*time.Millisecond + time.Duration(i)*10*time.Millisecond)
		execs = append(execs, simclient.Execution{Seq: int64(i + 1), IdempotencyKey: payment.ProcessorKey(uid), ExecutedAt: at})
		written := at.Add(time.Duration(i+1) * time.Millisecond)
		polls = append(polls, Poll{UID: uid.String(), StatusURL: "/v1/payments/" + uid.String(), Status: "succeeded",
			UpdatedAt: written, FinalSeenAt: written.Add(500 * time.Millisecond), Polls: 2})
	}
	// Executed twice: counts from the first execution.
	execs = append(execs, simclient.Execution{Seq: 101, IdempotencyKey: execs[0].IdempotencyKey, ExecutedAt: start.Add(time.Hour)})
	declined := uuid.New().String()
	polls = append(polls,
		Poll{UID: declined, StatusURL: "/v1/payments/" + declined, Status: "failed",
			UpdatedAt: start.Add(2 * time.Second), FinalSeenAt: start.Add(3 * time.Second), Polls: 3},
		Poll{UID: uuid.New().String(), StatusURL: "/v1/payments/x", Status: "processing", Polls: 4, Errors: 1},
		Poll{}, // a refused payment: not followed
	)

	s := pollStats(16, polls, execs, start, 50)
	if s.Pollers != 16 || s.Followed != 102 || s.SeenFinal != 101 || s.Executed != 100 || s.Polls != 207 || s.PollErrors != 1 {
		t.Errorf("counts = %+v", s)
	}
	// Server: 1..100 ms; client: 501..600 ms.
	// The histogram keeps 3 significant digits.
	near := func(got, want float64) bool { return math.Abs(got-want) <= want/1000+0.01 }
	if v := s.ServerVisible; v.Count != 100 || !near(v.P50, 50) || !near(v.P99, 99) || !near(v.Max, 100) {
		t.Errorf("server answer→visible = %+v, want p50 50, p99 99, max 100 ms", v)
	}
	if v := s.ClientVisible; v.Count != 100 || !near(v.P50, 550) || !near(v.P99, 599) || !near(v.Max, 600) {
		t.Errorf("client answer→visible = %+v, want p50 550, p99 599, max 600 ms", v)
	}
	// The declined payment's final status at 2 s is the last; N/L = 102/50.
	if s.LastFinalAt != 2 || s.LastSeenAt != 3 || s.IdealDrain != 2.04 || s.DrainOfIdeal != 0.98 {
		t.Errorf("drain = last %v s, seen %v s, N/L %v s, %v × N/L; want 2, 3, 2.04, 0.98",
			s.LastFinalAt, s.LastSeenAt, s.IdealDrain, s.DrainOfIdeal)
	}
	if s.DrainMet() {
		t.Error("drain met with a payment never seen final")
	}
}

func TestPollDrainGoal(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		s    PollStats
		want bool
	}{
		{"within 1.15 × N/L", PollStats{Followed: 6000, SeenFinal: 6000, IdealDrain: 20, LastFinalAt: 23}, true},
		{"past 1.15 × N/L", PollStats{Followed: 6000, SeenFinal: 6000, IdealDrain: 20, LastFinalAt: 23.1}, false},
		{"one never final", PollStats{Followed: 6000, SeenFinal: 5999, IdealDrain: 20, LastFinalAt: 21}, false},
		{"nothing followed", PollStats{}, false},
	} {
		if got := tc.s.DrainMet(); got != tc.want {
			t.Errorf("%s: DrainMet = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestPollStatsCountFromTheAnswer: when the simulator says when its answer
// left, answer→visible counts from then, not from the execution half a
// latency earlier.
func TestPollStatsCountFromTheAnswer(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	uid := uuid.New()
	executed := start.Add(time.Second)
	execs := []simclient.Execution{{Seq: 1, IdempotencyKey: payment.ProcessorKey(uid),
		ExecutedAt: executed, AnsweredAt: executed.Add(100 * time.Millisecond)}}
	written := executed.Add(130 * time.Millisecond)
	polls := []Poll{{UID: uid.String(), StatusURL: "/v1/payments/" + uid.String(), Status: "succeeded",
		UpdatedAt: written, FinalSeenAt: written, Polls: 1}}
	s := pollStats(1, polls, execs, start, 50)
	if v := s.ServerVisible; v.Count != 1 || math.Abs(v.Max-30) > 0.1 {
		t.Errorf("server answer→visible = %+v, want 30 ms (from the answer, not 130 from the execution)", v)
	}
}
