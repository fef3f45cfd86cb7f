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

// batchOf returns n proposed-API calls with keys prefix-0, prefix-1, ….
func batchOf(prefix string, n int) []Call {
	calls := make([]Call, n)
	for i := range calls {
		calls[i] = Call{API: APIProposed, Key: fmt.Sprintf("%s-%d", prefix, i), UserID: int64(i + 1), Amount: int64(-100 * (i + 1))}
	}
	return calls
}

// TestPayBatchExecutesEachOnce: every call of a batch is executed and
// recorded once, at one time, with one answer time for all: the batch's.
// The records survive a reload, and the batch again replays them all.
func TestPayBatchExecutesEachOnce(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "sim.jsonl")
	st := baseSettings()
	st.LatencyP50, st.LatencyP99 = Duration(20*time.Millisecond), Duration(20*time.Millisecond)
	s, err := New(Options{Settings: st, KeyTTL: time.Hour, DataFile: path})
	if err != nil {
		t.Fatal(err)
	}
	calls := batchOf("b", 3)
	items, err := s.PayBatch(context.Background(), calls)
	if err != nil {
		t.Fatalf("PayBatch: %v", err)
	}
	for i, it := range items {
		if it.Err != nil || !it.Executed || it.Replayed || it.Resource.IdempotencyKey != calls[i].Key {
			t.Errorf("item %d = %+v, want call %d executed", i, it, i)
		}
	}
	execs := s.Executions(Filter{})
	if len(execs) != 3 {
		t.Fatalf("%d executions, want 3", len(execs))
	}
	for i, e := range execs {
		if e.IdempotencyKey != calls[i].Key || e.Seq != int64(i+1) || e.ID != items[i].Resource.ID {
			t.Errorf("execution %d = %+v, want call %d as seq %d", i, e, i, i+1)
		}
		if !e.ExecutedAt.Equal(execs[0].ExecutedAt) || !e.AnsweredAt.Equal(execs[0].AnsweredAt) {
			t.Errorf("execution %d executed %v answered %v; want the batch's %v and %v",
				i, e.ExecutedAt, e.AnsweredAt, execs[0].ExecutedAt, execs[0].AnsweredAt)
		}
	}
	if got := execs[0].AnsweredAt.Sub(execs[0].ExecutedAt); got != 10*time.Millisecond {
		t.Errorf("answered %v after the execution, want the second half of the latency, 10ms", got)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	reloaded := newSim(t, Options{DataFile: path})
	if diff := cmp.Diff(execs, reloaded.Executions(Filter{})); diff != "" {
		t.Errorf("executions after reload (-before +after):\n%s", diff)
	}
	items, err = reloaded.PayBatch(context.Background(), calls)
	if err != nil {
		t.Fatal(err)
	}
	for i, it := range items {
		if it.Err != nil || !it.Replayed || it.Resource.ID != execs[i].ID {
			t.Errorf("item %d of the batch again = %+v, want a replay of %s", i, it, execs[i].ID)
		}
	}
	if n := reloaded.ExecutionCount(); n != 3 {
		t.Errorf("executions = %d, want 3", n)
	}
}

// TestPayBatchRefusesCallsAlone: above the rate limit and for a reused key
// a call is refused alone, takes no key and executes nothing; the others
// execute. A batch whose every call is refused answers at once.
func TestPayBatchRefusesCallsAlone(t *testing.T) {
	t.Parallel()
	clock := testkit.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	st := baseSettings()
	st.RateLimit, st.RateBurst = 3, 3
	s := newSim(t, Options{Settings: st, Now: clock.Now})
	ctx := context.Background()
	if _, err := s.Pay(ctx, Call{API: APIProposed, Key: "taken", UserID: 1, Amount: 1}); err != nil {
		t.Fatal(err)
	}
	clock.Add(time.Second) // the burst is whole again

	calls := append([]Call{{API: APIProposed, Key: "taken", UserID: 1, Amount: 2}}, batchOf("b", 4)...)
	items, err := s.PayBatch(ctx, calls)
	if err != nil {
		t.Fatalf("PayBatch: %v", err)
	}
	if !errors.Is(items[0].Err, ErrKeyReuse) {
		t.Errorf("item 0 = %+v, want ErrKeyReuse", items[0])
	}
	for i := 1; i <= 2; i++ {
		if items[i].Err != nil || !items[i].Executed {
			t.Errorf("item %d = %+v, want executed", i, items[i])
		}
	}
	for i := 3; i <= 4; i++ {
		var rl *RateLimitError
		if !errors.As(items[i].Err, &rl) || rl.Seconds() != 1 || items[i].Resource.ID != "" {
			t.Errorf("item %d = %+v, want a RateLimitError of 1 s", i, items[i])
		}
	}
	if s.ExecutionCount() != 3 || s.KeyCount() != 3 {
		t.Errorf("executions %d, keys %d; want 3 and 3 (the refused calls took none)", s.ExecutionCount(), s.KeyCount())
	}

	// No call left to run: the batch answers at once, without the latency.
	// A caller already gone proves it: a batch that waited would fail with
	// ErrClientGone.
	ten := Duration(10 * time.Minute)
	if _, err := s.UpdateSettings(Patch{LatencyP50: &ten, LatencyP99: &ten}); err != nil {
		t.Fatal(err)
	}
	clock.Add(time.Second)
	gone, cancel := context.WithCancel(ctx)
	cancel()
	items, err = s.PayBatch(gone, calls[:1])
	if err != nil || !errors.Is(items[0].Err, ErrKeyReuse) {
		t.Errorf("batch of a reused key = %+v, %v; want the item's ErrKeyReuse at once", items, err)
	}
}

// TestPayBatchFailsWhole: an outage, an injected error and a caller gone
// before the execution fail the whole batch; nothing executes, every key
// is free again, and each item carries the batch's error.
func TestPayBatchFailsWhole(t *testing.T) {
	t.Parallel()
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	isOutage := func(err error) bool { var o *OutageError; return errors.As(err, &o) }
	tests := []struct {
		name   string
		mod    func(*Settings)
		outage bool
		ctx    context.Context
		want   func(error) bool
	}{
		{"outage", func(*Settings) {}, true, context.Background(), isOutage},
		{"injected error", func(st *Settings) { st.ErrorRate = 1 }, false, context.Background(),
			func(err error) bool { return errors.Is(err, ErrInjected) }},
		// Ten minutes of latency: the canceled caller leaves in the first half.
		{"client gone", func(st *Settings) {
			st.LatencyP50, st.LatencyP99 = Duration(10*time.Minute), Duration(10*time.Minute)
		}, false, canceled, func(err error) bool { return errors.Is(err, ErrClientGone) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			st := baseSettings()
			tt.mod(&st)
			s := newSim(t, Options{Settings: st})
			if tt.outage {
				s.StartOutage(time.Hour)
			}
			items, err := s.PayBatch(tt.ctx, batchOf("b", 3))
			if !tt.want(err) {
				t.Fatalf("PayBatch = %v", err)
			}
			for i, it := range items {
				if !tt.want(it.Err) || it.Resource.ID != "" {
					t.Errorf("item %d = %+v, want the batch's error and no resource", i, it)
				}
			}
			if s.ExecutionCount() != 0 || s.KeyCount() != 0 {
				t.Errorf("executions %d, keys %d; want 0 and 0", s.ExecutionCount(), s.KeyCount())
			}
		})
	}
}

// TestPayBatchDicePerBatchAndPerCall: a decline is drawn per call, so a
// batch mixes declines and executions; a lost reply is drawn per batch,
// so every call that settled says DropResponse and stays executed.
func TestPayBatchDicePerBatchAndPerCall(t *testing.T) {
	t.Parallel()
	st := baseSettings()
	st.DeclineRate, st.LostResponseRate = 0.5, 1
	s := newSim(t, Options{Settings: st})
	items, err := s.PayBatch(context.Background(), batchOf("b", MaxBatch))
	if err != nil {
		t.Fatal(err)
	}
	executed, declined := 0, 0
	for i, it := range items {
		switch {
		case it.Err != nil || !it.DropResponse:
			t.Errorf("item %d = %+v, want settled with DropResponse", i, it)
		case it.Executed:
			executed++
		case it.Resource.Status == StatusDeclined:
			declined++
		}
	}
	// Seeded: with one draw for the batch, all 100 would fall the same way.
	if executed == 0 || declined == 0 || executed+declined != MaxBatch {
		t.Errorf("%d executed, %d declined; want both, %d in all", executed, declined, MaxBatch)
	}
	if n := s.ExecutionCount(); n != executed {
		t.Errorf("executions recorded = %d, want %d", n, executed)
	}
}

// TestPayBatchRefusesMalformed: more than MaxBatch calls, or a key twice,
// is refused before anything: no token, no key, no execution.
func TestPayBatchRefusesMalformed(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		calls []Call
		want  string
	}{
		{"too many", batchOf("b", MaxBatch+1), "101 payments in one batch, at most 100"},
		{"key twice", append(batchOf("b", 2), Call{API: APIProposed, Key: "b-1", UserID: 1, Amount: 1}), `idempotency key "b-1" twice`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newSim(t, Options{})
			items, err := s.PayBatch(context.Background(), tt.calls)
			if err == nil || !strings.Contains(err.Error(), tt.want) || items != nil {
				t.Fatalf("PayBatch = %v, %v; want no items and an error containing %q", items, err, tt.want)
			}
			if s.ExecutionCount() != 0 || s.KeyCount() != 0 {
				t.Errorf("executions %d, keys %d; want 0 and 0", s.ExecutionCount(), s.KeyCount())
			}
		})
	}
	if err := CheckBatch([]string{"", "", "a"}); err != nil {
		t.Errorf("CheckBatch of calls without keys = %v, want nil", err)
	}
}

// TestPayBatchesSharingKeysBothFinish: batches holding the same keys in
// opposite orders, run at once, both finish and execute each key once.
// Claiming in request order, each could hold a key the other waits for
// until its caller gave up; the minute's deadline only bounds such a hang.
func TestPayBatchesSharingKeysBothFinish(t *testing.T) {
	t.Parallel()
	st := baseSettings()
	st.LatencyP50, st.LatencyP99 = Duration(5*time.Millisecond), Duration(5*time.Millisecond)
	s := newSim(t, Options{Settings: st})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const rounds = 20
	var wg sync.WaitGroup
	errs := make([]error, 2*rounds)
	for i := range rounds {
		forward := batchOf(fmt.Sprintf("round%d", i), MaxBatch)
		backward := slices.Clone(forward)
		slices.Reverse(backward)
		wg.Go(func() { _, errs[2*i] = s.PayBatch(ctx, forward) })
		wg.Go(func() { _, errs[2*i+1] = s.PayBatch(ctx, backward) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("batch %d: %v", i, err)
		}
	}
	if n := s.ExecutionCount(); n != rounds*MaxBatch {
		t.Errorf("executions = %d, want %d (each key once)", n, rounds*MaxBatch)
	}
}

// TestPayBatchWaitsForAKeyInFlight: a batch meeting a key held by a call in
// flight waits for it and replays its result, as a single call does.
func TestPayBatchWaitsForAKeyInFlight(t *testing.T) {
	t.Parallel()
	st := baseSettings()
	st.LatencyP50, st.LatencyP99 = Duration(50*time.Millisecond), Duration(50*time.Millisecond)
	s := newSim(t, Options{Settings: st})
	calls := batchOf("b", 2)
	first := make(chan Result, 1)
	go func() {
		r, err := s.Pay(context.Background(), calls[1])
		if err != nil {
			t.Errorf("Pay: %v", err)
		}
		first <- r
	}()
	testkit.Eventually(t, "the single call to hold its key", func() bool { return s.KeyCount() > 0 })
	items, err := s.PayBatch(context.Background(), calls)
	if err != nil {
		t.Fatal(err)
	}
	single := <-first
	if !items[0].Executed || !items[1].Replayed || items[1].Resource.ID != single.Resource.ID {
		t.Errorf("batch = %+v, single call = %+v; want b-0 executed and b-1 replaying the single call", items, single)
	}
	if n := s.ExecutionCount(); n != 2 {
		t.Errorf("executions = %d, want 2", n)
	}
}
