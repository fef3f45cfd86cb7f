package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/finsvc/finance/services/devstack/internal/stack"
)

// Role is what a killable process does. It decides when the process counts
// as working and which kills its plan gets.
type Role string

const (
	// RoleHTTP answers requests: killed with requests in flight.
	RoleHTTP Role = "http"
	// RoleRelay moves records between PostgreSQL and Kafka.
	RoleRelay Role = "relay"
	// RoleConsumer is a member of a Kafka consumer group (Target.Group):
	// it works only once its group is stable, and it is also killed inside
	// its group's rebalance, while it joins and syncs.
	RoleConsumer Role = "consumer"
	// RoleProcessor is the processor simulator: left alone during its
	// outage, which a restart would end early.
	RoleProcessor Role = "processor"
)

// Target is a process the driver may kill: a name the stack supervises
// (st.Pid, st.HealthURLs) and its role.
type Target struct {
	Name  string
	Role  Role
	Group string // the consumer group of a RoleConsumer
}

// Targets are the processes of ours that may be killed. A new consumer is
// one more line here, with its group, once the stack starts it and gives it
// a health URL; --kill then takes its name.
// devkafka is not a target: a SIGKILLed kfake loses open transactions (see
// docs/chaos.md).
var Targets = []Target{
	{Name: "gateway", Role: RoleHTTP},
	{Name: "outbox-relay", Role: RoleRelay},
	{Name: "dispatcher", Role: RoleConsumer, Group: "dispatcher"},
	{Name: "status-consumer", Role: RoleConsumer, Group: "status-consumer"},
	{Name: "processor-sim", Role: RoleProcessor},
	{Name: webhookService, Role: RoleConsumer, Group: "webhook-delivery"},
}

// TargetNames returns the names of ts.
func TargetNames(ts []Target) []string {
	names := make([]string, 0, len(ts))
	for _, t := range ts {
		names = append(names, t.Name)
	}
	return names
}

func targetByName(name string) (Target, bool) {
	for _, t := range Targets {
		if t.Name == name {
			return t, true
		}
	}
	return Target{}, false
}

// The kinds of kill, as planned.
const (
	// KindWorking kills a process that is working: healthy and, for a
	// consumer, with its group stable.
	KindWorking = "working"
	// KindQuick kills a consumer a second time 0.2–1.5 s after the
	// supervisor restarted it, aimed at the moment its group rebalances
	// (it is joining or syncing): the kill of issue 10.
	KindQuick = "quick"
	// KindRestart kills a process within 0.2 s of its restart, while it
	// starts up.
	KindRestart = "restart"
	// KindPaced kills whatever runs at a fixed pace, in any state (the
	// Sequence schedule).
	KindPaced = "paced"
)

// Windows of the follow-up kills, after the restart was seen.
const (
	quickFrom, quickTo = 200 * time.Millisecond, 1500 * time.Millisecond
	restartTo          = 200 * time.Millisecond
)

// planStep is one planned kill.
type planStep struct {
	Service string
	Kind    string
	// After is, in a Sequence, the time since the previous kill (the
	// first: since the traffic started).
	After time.Duration
	// Follow are, in a PerService plan, the kills that follow this one,
	// each once the supervisor restarted the process after the previous.
	Follow []string
}

// killPlan is the explicit kill schedule of a run, drawn before the
// traffic starts and logged.
type killPlan struct {
	Schedule   Schedule
	PerService map[string][]planStep // PerService: each service's working kills, in order
	Sequence   []planStep            // Sequence: every kill, in order
}

// newPlan draws the kill plan of cfg.
func newPlan(cfg Config, rng *rand.Rand) killPlan {
	p := killPlan{Schedule: cfg.Schedule}
	targets := make([]Target, 0, len(cfg.Kill))
	for _, name := range cfg.Kill {
		if t, ok := targetByName(name); ok {
			targets = append(targets, t)
		}
	}
	switch cfg.Schedule {
	case PerService:
		p.PerService = map[string][]planStep{}
		for _, t := range targets {
			steps := make([]planStep, cfg.KillsPerService)
			for i := range steps {
				steps[i] = planStep{Service: t.Name, Kind: KindWorking}
			}
			quick := 0
			if t.Role == RoleConsumer {
				quick = cfg.QuickKills
			}
			// Follow-ups go to drawn kills, the first kill excepted while
			// there is room: it also checks the process's first start.
			skip := 0
			if len(steps) > quick+cfg.RestartKills {
				skip = 1
			}
			slots := rng.Perm(len(steps) - skip)
			for i := range slots {
				slots[i] += skip
			}
			n := 0
			if t.Role == RoleConsumer {
				for ; n < quick; n++ {
					for range cfg.QuickBurst {
						steps[slots[n]].Follow = append(steps[slots[n]].Follow, KindQuick)
					}
				}
			}
			for i := 0; i < cfg.RestartKills; i++ {
				steps[slots[n+i]].Follow = []string{KindRestart}
			}
			p.PerService[t.Name] = steps
		}
	case Sequence:
		if len(targets) == 0 {
			return p
		}
		// Every service as often as the count allows, the rest drawn,
		// in a drawn order.
		names := make([]string, 0, cfg.SequenceKills)
		for len(names)+len(targets) <= cfg.SequenceKills {
			names = append(names, TargetNames(targets)...)
		}
		for _, i := range rng.Perm(len(targets))[:cfg.SequenceKills-len(names)] {
			names = append(names, targets[i].Name)
		}
		rng.Shuffle(len(names), func(i, j int) { names[i], names[j] = names[j], names[i] })
		for _, name := range names {
			gap := cfg.GapMin + time.Duration(rng.Int64N(int64(cfg.GapMax-cfg.GapMin)+1))
			p.Sequence = append(p.Sequence, planStep{Service: name, Kind: KindPaced, After: gap})
		}
	}
	return p
}

// Want returns the kills planned per service and kind.
func (p killPlan) Want() map[string]map[string]int {
	want := map[string]map[string]int{}
	add := func(service, kind string) {
		if want[service] == nil {
			want[service] = map[string]int{}
		}
		want[service][kind]++
	}
	for _, s := range p.Sequence {
		add(s.Service, s.Kind)
	}
	for _, steps := range p.PerService {
		for _, s := range steps {
			add(s.Service, s.Kind)
			for _, f := range s.Follow {
				add(s.Service, f)
			}
		}
	}
	return want
}

// Lines describes the plan for the log, one line per service or kill.
func (p killPlan) Lines() []string {
	var lines []string
	if p.Schedule == Sequence {
		at := time.Duration(0)
		for i, s := range p.Sequence {
			at += s.After
			lines = append(lines, fmt.Sprintf("kill %d: %s %v after the previous kill (≈ +%.1fs)", i+1, s.Service, s.After.Round(10*time.Millisecond), at.Seconds()))
		}
		return lines
	}
	names := make([]string, 0, len(p.PerService))
	for n := range p.PerService {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		steps := p.PerService[n]
		var quick, restart []string
		burst := 0
		for i, s := range steps {
			if first(s.Follow) == KindQuick {
				burst = len(s.Follow)
			}
			switch first(s.Follow) {
			case KindQuick:
				quick = append(quick, fmt.Sprint(i+1))
			case KindRestart:
				restart = append(restart, fmt.Sprint(i+1))
			}
		}
		line := fmt.Sprintf("%s: %d kills of the working process (more while traffic is left)", n, len(steps))
		if len(quick) > 0 {
			line += fmt.Sprintf("; after #%s %d quick kills in a row, each %v–%v after the restart, aimed inside the rebalance",
				strings.Join(quick, ", #"), burst, quickFrom, quickTo)
		}
		if len(restart) > 0 {
			line += fmt.Sprintf("; after #%s a kill within %v of the restart", strings.Join(restart, ", #"), restartTo)
		}
		lines = append(lines, line)
	}
	return lines
}

func first(kinds []string) string {
	if len(kinds) == 0 {
		return ""
	}
	return kinds[0]
}

// killRecord is one SIGKILL as it happened.
type killRecord struct {
	At      time.Time `json:"at"`
	Offset  float64   `json:"offset_seconds"` // since the traffic started
	Service string    `json:"service"`
	Pid     int       `json:"pid"`
	Kind    string    `json:"kind"`
	// Up is how long the killed process had run, from the moment the
	// driver saw the supervisor start it (polled every 10 ms).
	Up float64 `json:"up_seconds"`
	// GroupState is a consumer's group state just before the kill
	// (PreparingRebalance, CompletingRebalance, Stable, ...).
	GroupState  string `json:"group_state,omitempty"`
	InRebalance bool   `json:"in_rebalance"`
}

func (k killRecord) String() string {
	where := "not a consumer"
	if k.GroupState != "" {
		where = "group " + k.GroupState + ": "
		if k.InRebalance {
			where += "inside rebalance"
		} else {
			where += "not inside a rebalance"
		}
	}
	return fmt.Sprintf("+%.1fs SIGKILL %s (pid %d), %s kill, up %.2fs, %s", k.Offset, k.Service, k.Pid, k.Kind, k.Up, where)
}

// rebalancing reports whether a group state is one of a rebalance.
func rebalancing(state string) bool {
	return state == "PreparingRebalance" || state == "CompletingRebalance"
}

// procWatch follows the supervisor's current process of each target by
// polling its pid. The supervisor restarts a killed process after its
// restart delay; a new pid is the moment it did, which the follow-up kills
// aim at.
type procWatch struct {
	st *stack.Stack

	mu      sync.Mutex
	seen    map[string]procSeen
	changed chan struct{} // closed and replaced at every change
}

type procSeen struct {
	pid   int // 0 while the supervisor restarts it
	since time.Time
}

func newProcWatch(st *stack.Stack) *procWatch {
	return &procWatch{st: st, seen: map[string]procSeen{}, changed: make(chan struct{})}
}

// run polls every 10 ms until ctx ends.
func (w *procWatch) run(ctx context.Context, names []string) {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		now := time.Now()
		w.mu.Lock()
		changed := false
		for _, n := range names {
			if pid := w.st.Pid(n); pid != w.seen[n].pid {
				w.seen[n] = procSeen{pid: pid, since: now}
				changed = true
			}
		}
		if changed {
			close(w.changed)
			w.changed = make(chan struct{})
		}
		w.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (w *procWatch) current(name string) (procSeen, <-chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.seen[name], w.changed
}

// waitRunning waits up to timeout for a process of name other than not
// (0: any) to run.
func (w *procWatch) waitRunning(ctx context.Context, name string, not int, timeout time.Duration) (procSeen, bool) {
	deadline := time.After(timeout)
	for {
		s, changed := w.current(name)
		if s.pid != 0 && s.pid != not {
			return s, true
		}
		select {
		case <-ctx.Done():
			return procSeen{}, false
		case <-deadline:
			return procSeen{}, false
		case <-changed:
		}
	}
}

// groupState returns a consumer group's state: "" without an admin client,
// "unreadable" when the broker did not answer it.
func (a *agents) groupState(ctx context.Context, group string) string {
	if a.admin == nil {
		return ""
	}
	dctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	described, err := a.admin.DescribeGroups(dctx, group)
	if err != nil {
		return "unreadable"
	}
	d, ok := described[group]
	if !ok || d.Err != nil {
		return "unreadable"
	}
	return d.State
}

// ready reports whether t is up and, for a consumer, whether its group is
// stable with a member: the process is doing its work.
func (a *agents) ready(ctx context.Context, t Target) bool {
	if !healthy(ctx, a.http, a.st.HealthURLs()[t.Name]) {
		return false
	}
	if t.Role != RoleConsumer || a.admin == nil {
		return true
	}
	dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	described, err := a.admin.DescribeGroups(dctx, t.Group)
	if err != nil {
		return false
	}
	d, ok := described[t.Group]
	return ok && d.Err == nil && d.State == "Stable" && len(d.Members) > 0
}

// kill SIGKILLs seen.pid if it is still t's current process, and records and
// logs the kill; state is t's group state just before, if already read.
func (a *agents) kill(ctx context.Context, t Target, seen procSeen, kind, state string) bool {
	if t.Role == RoleConsumer && state == "" {
		state = a.groupState(ctx, t.Group)
	}
	if cur, _ := a.watch.current(t.Name); cur.pid != seen.pid || a.st.Pid(t.Name) != seen.pid {
		return false // it died on its own meanwhile
	}
	if err := syscall.Kill(seen.pid, syscall.SIGKILL); err != nil {
		a.logf("kill %s (pid %d): %v", t.Name, seen.pid, err)
		return false
	}
	now := time.Now()
	rec := killRecord{
		At: now, Offset: now.Sub(a.rep.StartedAt).Seconds(), Service: t.Name, Pid: seen.pid, Kind: kind,
		Up: now.Sub(seen.since).Seconds(), GroupState: state, InRebalance: rebalancing(state),
	}
	a.mu.Lock()
	a.rep.Kills[t.Name]++
	if a.rep.KillsByKind[t.Name] == nil {
		a.rep.KillsByKind[t.Name] = map[string]int{}
	}
	a.rep.KillsByKind[t.Name][kind]++
	a.rep.KillLog = append(a.rep.KillLog, rec)
	if now.After(a.rep.LastKill) {
		a.rep.LastKill = now
	}
	a.mu.Unlock()
	if !a.cfg.Quiet {
		a.logf("%s", rec)
	}
	return true
}

// killer carries out t's PerService plan: it kills t while it works, each
// time once t is back and working (ready) and after a random time drawn so
// that the remaining kills fit into the traffic that is left, so every such
// kill hits a working process in the middle of its work. A planned
// follow-up kills t again once the supervisor restarted it. Past the plan
// it goes on killing while traffic is left.
func (a *agents) killer(ctx context.Context, t Target, plan []planStep, rng *rand.Rand) {
	done := 0
	for {
		if done >= len(plan) && a.remaining() <= 0 {
			return // the plan is carried out, and the last payments are out
		}
		for !a.ready(ctx, t) || (t.Role == RoleProcessor && a.outageActive()) {
			if !slept(ctx, 250*time.Millisecond) {
				return
			}
		}
		// Each later kill costs a restart (the supervisor's delay grows to
		// 10 s), a consumer's also a group rebalance (up to its 10 s
		// session timeout), and a follow-up one more restart: leave room
		// for them, and finish with some traffic to spare.
		left, follows := max(len(plan)-done, 1), 0
		for _, s := range plan[min(done, len(plan)):] {
			follows += len(s.Follow)
		}
		cost := 12 * time.Second
		if t.Role == RoleConsumer {
			cost = 25 * time.Second
		}
		budget := a.remaining()*85/100 - time.Duration(left-1)*cost - time.Duration(follows)*12*time.Second
		mean := max(budget/time.Duration(2*left+1)*2, time.Second)
		gap := time.Duration(float64(mean) * (0.3 + 1.4*rng.Float64()))
		if !slept(ctx, max(gap, 500*time.Millisecond)) {
			return
		}
		if t.Role == RoleProcessor && a.outageActive() {
			continue
		}
		seen, _ := a.watch.current(t.Name)
		if seen.pid == 0 || !a.kill(ctx, t, seen, KindWorking, "") {
			continue
		}
		var follow []string
		if done < len(plan) {
			follow = plan[done].Follow
		}
		done++
		pid := seen.pid
		for _, kind := range follow {
			if pid = a.followUp(ctx, t, pid, kind, rng); pid == 0 {
				break
			}
		}
	}
}

// followUp kills t again once the supervisor restarted it after killed,
// and returns the pid it killed (0 if none): a KindRestart within 0.2 s of
// the restart; a KindQuick 0.2–1.5 s after it, at a drawn moment once the
// group is rebalancing (the restarted member joined and waits in JoinGroup
// or SyncGroup), or at 1.5 s at the latest. A process that dies on its own
// first (a failed start) is followed to its next restart, three times at
// most.
func (a *agents) followUp(ctx context.Context, t Target, killed int, kind string, rng *rand.Rand) int {
	for range 3 {
		seen, ok := a.watch.waitRunning(ctx, t.Name, killed, 30*time.Second)
		if !ok {
			if ctx.Err() == nil {
				a.logf("%s: no restart seen within 30s after pid %d; %s kill skipped", t.Name, killed, kind)
			}
			return 0
		}
		if t.Role == RoleProcessor && a.outageActive() {
			a.logf("%s: in its outage; %s kill skipped", t.Name, kind)
			return 0
		}
		state := ""
		if kind == KindRestart {
			if !slept(ctx, time.Until(seen.since.Add(time.Duration(rng.Int64N(int64(restartTo)))))) {
				return 0
			}
		} else {
			if !slept(ctx, time.Until(seen.since.Add(quickFrom+time.Duration(rng.Int64N(int64(quickTo-quickFrom)))))) {
				return 0
			}
			for t.Role == RoleConsumer {
				state = a.groupState(ctx, t.Group)
				if rebalancing(state) || time.Since(seen.since) >= quickTo {
					break
				}
				if !slept(ctx, 50*time.Millisecond) {
					return 0
				}
			}
		}
		if a.kill(ctx, t, seen, kind, state) {
			return seen.pid
		}
		a.logf("%s (pid %d) exited on its own before its %s kill; waiting for its next restart", t.Name, seen.pid, kind)
		killed = seen.pid
	}
	return 0
}

// sequence carries out a Sequence plan: each kill its gap after the
// previous one, of whatever process runs then. A service being restarted
// is waited for (up to 15 s), so the gap can stretch.
func (a *agents) sequence(ctx context.Context, plan []planStep) {
	last := a.rep.StartedAt
	for _, s := range plan {
		if !slept(ctx, time.Until(last.Add(s.After))) {
			return
		}
		t, _ := targetByName(s.Service)
		for t.Role == RoleProcessor && a.outageActive() {
			if !slept(ctx, 250*time.Millisecond) {
				return
			}
		}
		for {
			seen, ok := a.watch.waitRunning(ctx, t.Name, 0, 15*time.Second)
			if !ok {
				if ctx.Err() == nil {
					a.logf("%s not running after 15s; kill skipped", t.Name)
				}
				break
			}
			if a.kill(ctx, t, seen, s.Kind, "") || !slept(ctx, 10*time.Millisecond) {
				break
			}
		}
		last = time.Now()
	}
}
