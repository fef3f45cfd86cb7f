package sim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/finsvc/finance/pkg/testkit"
)

// baseSettings has no latency, no faults and a limit no test reaches.
func baseSettings() Settings {
	return Settings{API: APIProposed, RateLimit: 1e6, RateBurst: 1e6}
}

func newSim(t *testing.T, opts Options) *Simulator {
	t.Helper()
	if opts.Settings == (Settings{}) {
		opts.Settings = baseSettings()
	}
	if opts.KeyTTL == 0 {
		opts.KeyTTL = 72 * time.Hour
	}
	s, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func TestLatencyFit(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		p50, p99 time.Duration
	}{
		{"default", 50 * time.Millisecond, 250 * time.Millisecond},
		{"narrow", 100 * time.Millisecond, 120 * time.Millisecond},
		{"constant", 10 * time.Millisecond, 10 * time.Millisecond},
		{"none", 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l := fitLogNormal(tt.p50, tt.p99)
			rng := rand.New(rand.NewPCG(1, 2))
			const n = 200_000
			s := make([]time.Duration, n)
			for i := range s {
				s[i] = l.sample(rng)
			}
			slices.Sort(s)
			for _, q := range []struct {
				name      string
				got, want time.Duration
			}{
				{"p50", s[n/2], tt.p50},
				{"p99", s[n*99/100], tt.p99},
			} {
				if diff := float64(q.got - q.want); diff > 0.03*float64(q.want) || -diff > 0.03*float64(q.want) {
					t.Errorf("%s = %v, want %v ±3%%", q.name, q.got, q.want)
				}
			}
			if s[0] < 0 {
				t.Errorf("negative latency %v", s[0])
			}
		})
	}
}

func TestSettingsValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		mod  func(*Settings)
		want []string // substrings of the error; none means valid
	}{
		{"base", func(*Settings) {}, nil},
		{"default latency", func(s *Settings) {
			s.LatencyP50, s.LatencyP99 = Duration(50*time.Millisecond), Duration(250*time.Millisecond)
		}, nil},
		{"rates at bounds", func(s *Settings) { s.DeclineRate, s.ErrorRate, s.LostResponseRate = 0, 1, 1 }, nil},
		{"bad api", func(s *Settings) { s.API = "v3" }, []string{`api "v3"`}},
		{"zero limit", func(s *Settings) { s.RateLimit = 0 }, []string{"rate_limit 0"}},
		{"negative limit", func(s *Settings) { s.RateLimit = -1 }, []string{"rate_limit -1"}},
		{"zero burst", func(s *Settings) { s.RateBurst = 0 }, []string{"rate_burst 0"}},
		{"p99 below p50", func(s *Settings) { s.LatencyP50, s.LatencyP99 = Duration(time.Second), Duration(time.Millisecond) }, []string{"below latency_p50"}},
		{"p99 without p50", func(s *Settings) { s.LatencyP99 = Duration(time.Second) }, []string{"latency_p50 0"}},
		{"every rate wrong", func(s *Settings) { s.DeclineRate, s.ErrorRate, s.LostResponseRate = -0.1, 1.5, 2 }, []string{"decline_rate -0.1", "error_rate 1.5", "lost_response_rate 2"}},
		{"all reported at once", func(s *Settings) { s.RateLimit, s.DeclineRate = 0, 3 }, []string{"rate_limit", "decline_rate"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := baseSettings()
			tt.mod(&s)
			err := s.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate = nil, want errors %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate = %q, want it to mention %q", err, w)
				}
			}
		})
	}
}

func TestApplyResetsBurstWithLimit(t *testing.T) {
	t.Parallel()
	limit, burst := 10.0, 3
	tests := []struct {
		name      string
		p         Patch
		wantBurst int
	}{
		{"limit only", Patch{RateLimit: &limit}, 10},
		{"limit and burst", Patch{RateLimit: &limit, RateBurst: &burst}, 3},
		{"burst only", Patch{RateBurst: &burst}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := baseSettings().Apply(tt.p).RateBurst; got != tt.wantBurst {
				t.Errorf("burst = %d, want %d", got, tt.wantBurst)
			}
		})
	}
}

func TestKeyExpiresAfterTTL(t *testing.T) {
	t.Parallel()
	clock := testkit.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	s := newSim(t, Options{KeyTTL: 24 * time.Hour, Now: clock.Now})
	ctx := context.Background()
	call := Call{API: APIProposed, Key: "k", UserID: 1, Amount: 100}

	first, err := s.Pay(ctx, call)
	if err != nil || !first.Executed {
		t.Fatalf("first Pay = %+v, %v; want executed", first, err)
	}
	clock.Add(24*time.Hour - time.Nanosecond)
	if r, err := s.Pay(ctx, call); err != nil || !r.Replayed {
		t.Fatalf("Pay just before the TTL = %+v, %v; want a replay", r, err)
	}
	if _, err := s.Lookup("k"); err != nil {
		t.Fatalf("Lookup before the TTL: %v", err)
	}
	clock.Add(time.Nanosecond)
	if _, err := s.Lookup("k"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Lookup at the TTL = %v, want ErrNotFound", err)
	}
	if n := s.keys.sweep(clock.Now()); n != 1 {
		t.Errorf("sweep dropped %d keys, want 1", n)
	}
	if r, err := s.Pay(ctx, call); err != nil || !r.Executed {
		t.Fatalf("Pay after the TTL = %+v, %v; want a new execution", r, err)
	}
	if got := s.ExecutionCount(); got != 2 {
		t.Errorf("executions = %d, want 2", got)
	}
}

func TestRateLimitRejectsWithoutExecuting(t *testing.T) {
	t.Parallel()
	clock := testkit.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	st := baseSettings()
	st.RateLimit, st.RateBurst = 0.5, 2 // two at once, then one every 2 s
	s := newSim(t, Options{Settings: st, Now: clock.Now})
	ctx := context.Background()
	pay := func(key string) error {
		_, err := s.Pay(ctx, Call{API: APIProposed, Key: key, UserID: 1, Amount: 1})
		return err
	}
	for _, k := range []string{"a", "b"} {
		if err := pay(k); err != nil {
			t.Fatalf("pay %s within the burst: %v", k, err)
		}
	}
	var rl *RateLimitError
	if err := pay("c"); !errors.As(err, &rl) || rl.Seconds() != 2 {
		t.Fatalf("pay c over the limit = %v, want a RateLimitError of 2 s", err)
	}
	if s.ExecutionCount() != 2 || s.KeyCount() != 2 {
		t.Errorf("executions %d, keys %d after the rejected call; want 2 and 2", s.ExecutionCount(), s.KeyCount())
	}
	// The rejected call took no token: after the advertised wait it passes.
	clock.Add(2 * time.Second)
	if err := pay("c"); err != nil {
		t.Fatalf("pay c after Retry-After: %v", err)
	}
	if err := pay("d"); !errors.As(err, &rl) {
		t.Fatalf("pay d = %v, want a RateLimitError", err)
	}
}

func TestClientGoneBeforeExecutionReleasesKey(t *testing.T) {
	t.Parallel()
	st := baseSettings()
	// Ten minutes of latency: the canceled caller leaves in the first half.
	st.LatencyP50, st.LatencyP99 = Duration(10*time.Minute), Duration(10*time.Minute)
	s := newSim(t, Options{Settings: st})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	call := Call{API: APIProposed, Key: "k", UserID: 1, Amount: 100}
	if _, err := s.Pay(ctx, call); !errors.Is(err, ErrClientGone) {
		t.Fatalf("Pay = %v, want ErrClientGone", err)
	}
	if got := s.ExecutionCount(); got != 0 {
		t.Errorf("executions = %d, want 0", got)
	}
	if got := s.KeyCount(); got != 0 {
		t.Errorf("keys held = %d, want 0 (released)", got)
	}
}

func TestConcurrentSameKeyExecutesOnce(t *testing.T) {
	t.Parallel()
	st := baseSettings()
	st.LatencyP50, st.LatencyP99 = Duration(5*time.Millisecond), Duration(5*time.Millisecond)
	s := newSim(t, Options{Settings: st})
	const n = 32
	results := make([]Result, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			results[i], errs[i] = s.Pay(context.Background(), Call{API: APIProposed, Key: "same", UserID: 7, Amount: -300})
		})
	}
	wg.Wait()
	executed := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("call %d: %v", i, errs[i])
		}
		if results[i].Executed {
			executed++
		}
		if results[i].Resource.ID != results[0].Resource.ID {
			t.Errorf("call %d got id %s, call 0 got %s", i, results[i].Resource.ID, results[0].Resource.ID)
		}
	}
	if executed != 1 || s.ExecutionCount() != 1 {
		t.Errorf("executed by %d calls, %d recorded; want 1 and 1", executed, s.ExecutionCount())
	}
}

func TestWaiterTakesOverAKeyItsHolderGaveUp(t *testing.T) {
	t.Parallel()
	st := baseSettings()
	st.LatencyP50, st.LatencyP99 = Duration(10*time.Minute), Duration(10*time.Minute)
	s := newSim(t, Options{Settings: st})
	call := Call{API: APIProposed, Key: "k", UserID: 1, Amount: 100}

	ctx1, cancel1 := context.WithCancel(context.Background())
	err1 := make(chan error, 1)
	go func() {
		_, err := s.Pay(ctx1, call)
		err1 <- err
	}()
	testkit.Eventually(t, "the first call to hold the key in flight", func() bool { return s.KeyCount() > 0 })
	var zero Duration
	if _, err := s.UpdateSettings(Patch{LatencyP50: &zero, LatencyP99: &zero}); err != nil {
		t.Fatal(err)
	}
	type payResult struct {
		r   Result
		err error
	}
	second := make(chan payResult, 1)
	go func() {
		r, err := s.Pay(context.Background(), call)
		second <- payResult{r, err}
	}()
	// Whether the second call is already waiting or not, the first gives
	// up without executing and the second executes, once.
	cancel1()
	if err := <-err1; !errors.Is(err, ErrClientGone) {
		t.Errorf("first call = %v, want ErrClientGone", err)
	}
	got := <-second
	if got.err != nil || !got.r.Executed {
		t.Errorf("second call = %+v, %v; want it executed", got.r, got.err)
	}
	if n := s.ExecutionCount(); n != 1 {
		t.Errorf("executions = %d, want 1", n)
	}
}

func TestJournalReload(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "sim.jsonl")
	ctx := context.Background()

	s1, err := New(Options{Settings: baseSettings(), KeyTTL: 72 * time.Hour, DataFile: path})
	if err != nil {
		t.Fatal(err)
	}
	st := baseSettings()
	st.DeclineRate = 1
	calls := []struct {
		decline bool
		call    Call
	}{
		{false, Call{API: APIProposed, Key: "a", UserID: 1, Amount: 10, Reference: "r1"}},
		{false, Call{API: APIAsIs, UserID: 2, Amount: -20}},
		{true, Call{API: APIProposed, Key: "d", UserID: 1, Amount: 30}},
	}
	for _, c := range calls {
		if c.decline {
			if _, err := s1.UpdateSettings(Patch{DeclineRate: &st.DeclineRate}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s1.Pay(ctx, c.call); err != nil {
			t.Fatalf("Pay %+v: %v", c.call, err)
		}
	}
	before := s1.Executions(Filter{})
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}
	// A crash in the middle of a write leaves half a line behind.
	appendHalfLine(t, path, 3)

	s2 := newSim(t, Options{DataFile: path})
	if diff := cmp.Diff(before, s2.Executions(Filter{})); diff != "" {
		t.Errorf("executions after reload (-want +got):\n%s", diff)
	}
	r, err := s2.Pay(ctx, calls[0].call)
	if err != nil || !r.Replayed || r.Resource.ID != before[0].ID {
		t.Errorf("replay of key a after reload = %+v, %v; want a replay of %s", r, err, before[0].ID)
	}
	r, err = s2.Pay(ctx, calls[2].call)
	if err != nil || !r.Replayed || r.Resource.Status != StatusDeclined {
		t.Errorf("replay of declined key d after reload = %+v, %v; want the decline replayed", r, err)
	}
	if _, err := s2.Pay(ctx, Call{API: APIProposed, Key: "a", UserID: 1, Amount: 11}); !errors.Is(err, ErrKeyReuse) {
		t.Errorf("reuse of key a after reload = %v, want ErrKeyReuse", err)
	}
	r, err = s2.Pay(ctx, Call{API: APIProposed, Key: "b", UserID: 3, Amount: 40})
	if err != nil {
		t.Fatal(err)
	}
	if r.Resource.ID != "pay_00000004" {
		t.Errorf("new id after reload = %s, want pay_00000004 (numbering continues)", r.Resource.ID)
	}
	got := s2.Executions(Filter{Key: "b"})
	if len(got) != 1 || got[0].Seq != 3 {
		t.Errorf("execution of key b = %+v, want seq 3", got)
	}
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}

	// The half line is gone and every line in the file parses.
	s3 := newSim(t, Options{DataFile: path})
	if got := s3.ExecutionCount(); got != 3 {
		t.Errorf("executions after second reload = %d, want 3", got)
	}
}

// appendHalfLine appends the first half of record seq's line to the data
// file at path, as a write cut short leaves it.
func appendHalfLine(t *testing.T, path string, seq int) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := fmt.Fprintf(f, `{"seq":%d,"api":"prop`, seq); err != nil {
		t.Fatal(err)
	}
}

func TestJournalRejectsCorruptMiddleLine(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "sim.jsonl")
	if err := os.WriteFile(path, []byte("not json\n{}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := New(Options{Settings: baseSettings(), KeyTTL: time.Hour, DataFile: path})
	if err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Fatalf("New = %v, want an error naming line 1", err)
	}
}

// TestJournalRefusesASecondSimulator: a second simulator on a data file in
// use fails at once, naming the file, and leaves the file as it was: it
// used to cut the first one's unfinished line, and the first then wrote on
// past a hole of NUL bytes, so that no later start could read the record.
// Once the first has stopped, the file opens.
func TestJournalRefusesASecondSimulator(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "sim.jsonl")
	ctx := context.Background()
	s1, err := New(Options{Settings: baseSettings(), KeyTTL: time.Hour, DataFile: path})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s1.Pay(ctx, Call{API: APIProposed, Key: "a", UserID: 1, Amount: 10}); err != nil {
		t.Fatal(err)
	}
	// The first simulator's next record, half written.
	appendHalfLine(t, path, 2)
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	_, err = New(Options{Settings: baseSettings(), KeyTTL: time.Hour, DataFile: path})
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "in use by another processor simulator") {
		t.Fatalf("second New = %v, want an error saying %s is in use", err, path)
	}
	if after, err := os.ReadFile(path); err != nil || !bytes.Equal(after, before) {
		t.Fatalf("the refused simulator changed the data file: %q, want %q (%v)", after, before, err)
	}

	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := newSim(t, Options{DataFile: path})
	if got := s2.ExecutionCount(); got != 1 {
		t.Errorf("executions after the first stopped = %d, want 1", got)
	}
}

// TestExecutionsSayWhenTheAnswerLeft: with latency, an execution's
// answered_at is after its executed_at (the second half of the latency)
// and no later than the moment Pay returned its reply; without latency
// the two are the same. A reload keeps it.
func TestExecutionsSayWhenTheAnswerLeft(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "sim.jsonl")
	st := baseSettings()
	st.LatencyP50, st.LatencyP99 = Duration(20*time.Millisecond), Duration(40*time.Millisecond)
	s := newSim(t, Options{Settings: st, DataFile: path})
	if _, err := s.Pay(context.Background(), Call{API: APIProposed, Key: "slow", UserID: 1, Amount: 10}); err != nil {
		t.Fatal(err)
	}
	replied := time.Now()
	zero := Duration(0)
	if _, err := s.UpdateSettings(Patch{LatencyP50: &zero, LatencyP99: &zero}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pay(context.Background(), Call{API: APIProposed, Key: "fast", UserID: 1, Amount: 10}); err != nil {
		t.Fatal(err)
	}
	check := func(execs []Execution) {
		t.Helper()
		if len(execs) != 2 {
			t.Fatalf("%d executions, want 2", len(execs))
		}
		slow, fast := execs[0], execs[1]
		if !slow.AnsweredAt.After(slow.ExecutedAt) || slow.AnsweredAt.After(replied) {
			t.Errorf("with latency: executed %v, answered %v, Pay returned %v; want executed < answered <= returned",
				slow.ExecutedAt, slow.AnsweredAt, replied)
		}
		if !fast.AnsweredAt.Equal(fast.ExecutedAt) {
			t.Errorf("without latency: executed %v, answered %v; want the same", fast.ExecutedAt, fast.AnsweredAt)
		}
	}
	check(s.Executions(Filter{}))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	reloaded := newSim(t, Options{Settings: baseSettings(), DataFile: path})
	check(reloaded.Executions(Filter{}))
}
