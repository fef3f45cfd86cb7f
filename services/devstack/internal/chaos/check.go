package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/finsvc/finance/pkg/verify"
	"github.com/finsvc/finance/services/devstack/internal/stack"
)

// Report is the outcome of one chaos run.
type Report struct {
	Config     Config    `json:"config"`
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`

	TrafficSeconds float64 `json:"traffic_seconds"`
	DrainSeconds   float64 `json:"drain_seconds"` // from the end of the traffic
	DrainTimedOut  bool    `json:"drain_timed_out"`

	// Liveness: every payment final within Config.Liveness of the last
	// kill (or of the end of the traffic, if later).
	TrafficEnd       time.Time `json:"traffic_end"`
	LastKill         time.Time `json:"last_kill,omitzero"`
	LivenessDeadline time.Time `json:"liveness_deadline"`
	LivenessChecked  bool      `json:"liveness_checked"`
	// AllFinalAt is when the last payment became final (its updated_at),
	// zero if some never did before the drain ended.
	AllFinalAt time.Time `json:"all_final_at,omitzero"`
	// DrainAfterLastKill is AllFinalAt minus LastKill, -1 when either is
	// missing.
	DrainAfterLastKill float64    `json:"drain_after_last_kill_seconds"`
	NonFinalAtDeadline int64      `json:"non_final_at_deadline"`
	NonFinal           []nonFinal `json:"non_final,omitempty"` // up to 20, the oldest first
	// LongestStall is the longest time no payment became final while
	// some were pending, ending LongestStallEnd seconds into the run (a
	// figure, not a pass condition: see stallMeter).
	LongestStall    float64 `json:"longest_stall_seconds"`
	LongestStallEnd float64 `json:"longest_stall_end_offset_seconds"`

	// What the clients did and were told.
	Sent       int            `json:"sent"`
	Attempts   int            `json:"attempts"`
	Accepted   int            `json:"accepted"`   // 202 or 200 with a payment id
	Rejected   int            `json:"rejected"`   // 422
	GaveUp     int            `json:"gave_up"`    // no final answer within the client's bound
	Unexpected int            `json:"unexpected"` // 4xx other than 409/422/429
	Resent     int            `json:"resent"`     // sent twice on purpose with the same key
	Insuff     int            `json:"insufficient_funds"`
	Problems   map[string]int `json:"rejections"` // 422 problem types

	Kills       map[string]int            `json:"kills"`         // per service
	KillsByKind map[string]map[string]int `json:"kills_by_kind"` // per service and kind
	KillPlan    map[string]map[string]int `json:"kill_plan"`     // planned, per service and kind
	KillSeed    int64                     `json:"kill_seed"`
	KillLog     []killRecord              `json:"kill_log"`
	Starts      []serviceStarts           `json:"starts"`
	Faults      map[string]int            `json:"broker_faults"`
	Outages     []outage                  `json:"outages"`

	// What the pipeline made of it, after the drain and reconcile.
	ByStatus          map[string]int64 `json:"by_status"`
	Executions        int64            `json:"processor_executions"`
	ReconcilePasses   int              `json:"reconcile_passes"`
	ReconcileResolved int64            `json:"reconcile_resolved"`
	ReconcileNote     string           `json:"reconcile_note,omitempty"`

	// The verdict. Each must be 0.
	Lost                  int64    `json:"lost"`
	PaidTwice             int64    `json:"paid_twice"`
	BalanceMismatches     int64    `json:"balance_mismatches"`
	Overdrafts            int64    `json:"overdrafts"`
	Stuck                 int64    `json:"stuck"`
	Unknown               int64    `json:"unknown"`
	IdempotencyViolations int64    `json:"idempotency_violations"`
	KillsShort            []string `json:"kills_short,omitempty"` // planned kills not carried out, as "service kind done/planned"

	// Webhooks: every event of the run's payments that maps to a webhook
	// type reached the run's receiver at least once, signed (checkWebhooks).
	WebhooksChecked      bool `json:"webhooks_checked"`
	WebhookEvents        int  `json:"webhook_events"`
	WebhookMissing       int  `json:"webhook_missing"`
	WebhookDeliveries    int  `json:"webhook_deliveries"`
	WebhookDistinct      int  `json:"webhook_distinct"`
	WebhookBadSignatures int  `json:"webhook_bad_signatures"`

	// Examples of what went wrong, for a human to follow up.
	Examples []string       `json:"examples,omitempty"`
	Verify   *verify.Report `json:"verify,omitempty"`
}

type serviceStarts struct {
	Service string `json:"service"`
	Starts  int    `json:"starts"`
}

// nonFinal is a payment not final at the liveness deadline.
type nonFinal struct {
	ID     int64   `json:"id"`
	UserID int64   `json:"user_id"`
	Status string  `json:"status"`
	Age    float64 `json:"age_seconds"`   // since it was accepted
	Idle   float64 `json:"since_seconds"` // since its last change
}

type outage struct {
	At      time.Time `json:"at"`
	Seconds float64   `json:"seconds"`
}

// OK reports whether the run found nothing wrong.
func (r *Report) OK() bool {
	return r.Lost == 0 && r.PaidTwice == 0 && r.BalanceMismatches == 0 && r.Overdrafts == 0 &&
		r.Stuck == 0 && r.Unknown == 0 && r.IdempotencyViolations == 0 && r.Unexpected == 0 &&
		len(r.KillsShort) == 0 && !r.DrainTimedOut && r.LivenessChecked && r.NonFinalAtDeadline == 0 &&
		r.Verify != nil && r.Verify.OK() &&
		r.WebhooksChecked && r.WebhookMissing == 0 && r.WebhookBadSignatures == 0
}

// reconcileResult is the part of `financectl reconcile --json` we read.
type reconcileResult struct {
	Unknown   int64 `json:"unknown"`
	Succeeded int64 `json:"succeeded"`
	Failed    int64 `json:"failed"`
	Left      int64 `json:"left"`
}

// reconcile runs `financectl reconcile` until no unknown payment is left
// that it could still resolve: a payment that became unknown less than its
// safety bound ago is left for a later pass.
func reconcile(ctx context.Context, st *stack.Stack, rep *Report, logf func(string, ...any)) error {
	help := st.Command(ctx, "financectl", "help", "reconcile")
	help.Stdout, help.Stderr = io.Discard, io.Discard
	if err := help.Run(); err != nil {
		rep.ReconcileNote = "financectl reconcile is not available: unknown payments were not resolved"
		logf("%s", rep.ReconcileNote)
		return nil
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		var stdout, stderr bytes.Buffer
		cmd := st.Command(ctx, "financectl", "reconcile", "--processor-url", st.SimURL, "--json")
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		runErr := cmd.Run()
		var res reconcileResult
		if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
			return fmt.Errorf("financectl reconcile: %v %v: %s %s", runErr, err, stdout.String(), stderr.String())
		}
		rep.ReconcilePasses++
		rep.ReconcileResolved += res.Succeeded + res.Failed
		logf("reconcile pass %d: %d unknown, %d resolved to succeeded, %d to failed, %d left",
			rep.ReconcilePasses, res.Unknown, res.Succeeded, res.Failed, res.Left)
		if res.Left == 0 || time.Now().After(deadline) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Second):
		}
	}
}

// check compares what the clients were told, the database and the
// processor's record, then runs the invariant checker.
func check(ctx context.Context, pool *pgxpool.Pool, st *stack.Stack, tr *traffic, rep *Report) error {
	answers := tr.snapshot()
	rep.Sent = int(tr.sent.Load())
	rep.Attempts = int(tr.attempts.Load())
	rep.Problems = map[string]int{}
	example := func(format string, args ...any) {
		if len(rep.Examples) < 50 {
			rep.Examples = append(rep.Examples, fmt.Sprintf(format, args...))
		}
	}
	for _, a := range answers {
		switch {
		case a.Code == http.StatusAccepted || a.Code == http.StatusOK:
			rep.Accepted++
		case a.Code == http.StatusUnprocessableEntity:
			rep.Rejected++
			rep.Problems[problemName(a.Problem)]++
			if strings.HasSuffix(a.Problem, "insufficient-funds") {
				rep.Insuff++
			}
			if !strings.HasSuffix(a.Problem, "insufficient-funds") {
				rep.IdempotencyViolations++ // a fresh key and body should be refused for funds only
				example("payment key %s (user %d, amount %d) refused with %s", a.Key, a.UserID, a.Amount, a.Problem)
			}
		case a.Code == 0:
			rep.GaveUp++
		default:
			rep.Unexpected++
			example("payment key %s (user %d): unexpected %d %s", a.Key, a.UserID, a.Code, a.Problem)
		}
		if a.ReplayID != 0 {
			rep.Resent++
			if a.ReplayID != a.ID {
				rep.IdempotencyViolations++
				example("payment key %s: first answered id %d, the same key again answered %d", a.Key, a.ID, a.ReplayID)
			}
		}
	}

	// Every payment a client was told about is in the database, as sent.
	type row struct {
		userID, amount int64
		key, status    string
	}
	payments := map[int64]row{}
	rows, err := pool.Query(ctx, `SELECT id, user_id, amount, idempotency_key, status FROM payments WHERE source = 'api'`)
	if err != nil {
		return err
	}
	for rows.Next() {
		var id int64
		var r row
		if err := rows.Scan(&id, &r.userID, &r.amount, &r.key, &r.status); err != nil {
			rows.Close()
			return err
		}
		payments[id] = r
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, a := range answers {
		if a.ID == 0 {
			continue
		}
		r, ok := payments[a.ID]
		if !ok || r.userID != a.UserID || r.amount != a.Amount || r.key != a.Key {
			rep.Lost++
			example("LOST payment %d (key %s, user %d, amount %d): the client was told %d, the database has %+v",
				a.ID, a.Key, a.UserID, a.Amount, a.Code, r)
		}
	}
	rep.ByStatus = map[string]int64{}
	for id, r := range payments {
		rep.ByStatus[r.status]++
		switch r.status {
		case "accepted", "processing":
			rep.Stuck++
			example("STUCK payment %d (user %d) is %s after the drain", id, r.userID, r.status)
		case "unknown":
			rep.Unknown++
			example("UNKNOWN payment %d (user %d) after reconcile", id, r.userID)
		}
	}

	// The ledger and processor invariants are pkg/verify's, against the
	// processor's statement (the one checker, as in financectl verify and
	// the load test); the chaos check adds what the clients were told.
	vcfg := verify.DefaultConfig()
	vrep, err := verify.New(pool, verify.NewHTTPStatement(st.SimURL), vcfg).Check(ctx)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	rep.Verify = &vrep
	rep.Executions = vrep.Executions
	for _, f := range vrep.Findings {
		if f.Count > 0 {
			example("verify: %s: %d (examples in the report's verify section)", f.Kind, f.Count)
		}
	}
	rep.Lost += vrep.Count(verify.ExecutedButFailed) + vrep.Count(verify.ExecutedNotSucceeded) + vrep.Count(verify.ExecutionWithoutPayment)
	rep.PaidTwice = vrep.Count(verify.PaidTwice) + vrep.Count(verify.UnmatchedExecutions)
	rep.BalanceMismatches = vrep.Count(verify.BalanceMismatch) + vrep.Count(verify.HeldMismatch) +
		vrep.Count(verify.HoldMismatch) + vrep.Count(verify.EntryMismatch) + vrep.Count(verify.SucceededWithoutEntry) +
		vrep.Count(verify.AmountMismatch) + vrep.Count(verify.SucceededNotExecuted)
	rep.Overdrafts = vrep.Count(verify.NegativeAvailable)
	rep.Stuck = max(rep.Stuck, vrep.Count(verify.StuckInFlight))
	rep.KillsShort = killsShort(rep.KillPlan, rep.KillsByKind)
	return nil
}

// killsShort lists the planned kills not carried out, as "service kind
// done/planned".
func killsShort(plan, done map[string]map[string]int) []string {
	var short []string
	for service, kinds := range plan {
		for kind, n := range kinds {
			if got := done[service][kind]; got < n {
				short = append(short, fmt.Sprintf("%s %s %d/%d", service, kind, got, n))
			}
		}
	}
	sort.Strings(short)
	return short
}

func problemName(t string) string {
	if i := strings.LastIndex(t, "/"); i >= 0 {
		return t[i+1:]
	}
	return t
}

// WriteText prints the report for a human.
func (r *Report) WriteText(w io.Writer) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	line := func(k string, format string, args ...any) {
		fmt.Fprintf(tw, "  %s\t"+format+"\n", append([]any{k}, args...)...)
	}
	fmt.Fprintln(tw, "\n==================== chaos report ====================")
	c := r.Config
	line("scenario", "%s", c.Scenario)
	line("run", "%d payments over %d users (balance %d each), %g/s, %d clients", c.Payments, c.Users, c.Balance, c.Rate, c.Clients)
	line("processor", "%.0f%% 5xx, %.0f%% lost responses, %.0f%% declines, outage %v at %.0f%% of the traffic",
		c.SimErrorRate*100, c.SimLostRate*100, c.SimDecline*100, c.Outage, c.OutageAt*100)
	line("broker", "%d brokers, faults %t", c.Brokers, c.BrokerFaults)
	line("time", "traffic %.0fs, drain %.0fs (timed out: %t), total %.0fs", r.TrafficSeconds, r.DrainSeconds, r.DrainTimedOut, r.FinishedAt.Sub(r.StartedAt).Seconds())
	fmt.Fprintln(tw, "clients\t")
	line("sent", "%d (HTTP attempts %d)", r.Sent, r.Attempts)
	line("accepted", "%d (202/200)", r.Accepted)
	line("rejected", "%d (422: %s)", r.Rejected, mapLine(r.Problems))
	line("gave up", "%d (no final answer within %v)", r.GaveUp, giveUpAfter)
	line("unexpected", "%d", r.Unexpected)
	line("same key twice", "%d", r.Resent)
	fmt.Fprintln(tw, "chaos\t")
	total := 0
	for _, n := range r.Kills {
		total += n
	}
	line("SIGKILLs", "%d: %s", total, mapLine(r.Kills))
	kinds, inside := map[string]int{}, map[string]int{}
	insideAll, consumerKills := 0, 0
	for _, k := range r.KillLog {
		kinds[k.Kind]++
		if k.GroupState != "" {
			consumerKills++
		}
		if k.InRebalance {
			insideAll++
			inside[k.Service+" "+k.Kind]++
		}
	}
	line("kills by kind", "%s (schedule %s, kill seed %d)", mapLine(kinds), c.Schedule, r.KillSeed)
	line("inside rebalance", "%d of %d consumer kills: %s", insideAll, consumerKills, mapLine(inside))
	starts := make([]string, 0, len(r.Starts))
	for _, s := range r.Starts {
		starts = append(starts, fmt.Sprintf("%s %d", s.Service, s.Starts))
	}
	line("process starts", "%s", strings.Join(starts, ", "))
	nf := 0
	for _, n := range r.Faults {
		nf += n
	}
	line("broker faults", "%d: %s", nf, mapLine(r.Faults))
	line("outages", "%d", len(r.Outages))
	fmt.Fprintln(tw, "pipeline\t")
	line("payments", "%s", mapLine64(r.ByStatus))
	line("executions", "%d at the processor", r.Executions)
	line("reconcile", "%d passes, %d resolved %s", r.ReconcilePasses, r.ReconcileResolved, r.ReconcileNote)
	fmt.Fprintln(tw, "liveness\t")
	since := func(t time.Time) string {
		if t.IsZero() {
			return "none"
		}
		return fmt.Sprintf("+%.1fs", t.Sub(r.StartedAt).Seconds())
	}
	line("timeline", "last kill %s, traffic ended %s, deadline %s (%v after the later), every payment final %s",
		since(r.LastKill), since(r.TrafficEnd), since(r.LivenessDeadline), c.Liveness, since(r.AllFinalAt))
	drain := "never (not every payment became final)"
	if r.DrainAfterLastKill >= 0 {
		drain = fmt.Sprintf("%.1fs", r.DrainAfterLastKill)
	} else if r.LastKill.IsZero() {
		drain = "no kill"
	}
	line("drain after last kill", "%s", drain)
	line("longest stall", "%.0fs without a payment becoming final while some were pending (until +%.0fs)", r.LongestStall, r.LongestStallEnd)
	line("not final at deadline", "%d", r.NonFinalAtDeadline)
	for _, p := range r.NonFinal {
		line("", "payment %d (user %d) %s, accepted %.0fs before the deadline check, unchanged for %.0fs", p.ID, p.UserID, p.Status, p.Age, p.Idle)
	}
	fmt.Fprintln(tw, "verdict\t")
	line("lost", "%d", r.Lost)
	line("paid twice", "%d", r.PaidTwice)
	line("balance mismatches", "%d", r.BalanceMismatches)
	line("overdrafts", "%d", r.Overdrafts)
	line("stuck", "%d", r.Stuck)
	line("unknown", "%d", r.Unknown)
	line("idempotency", "%d violations", r.IdempotencyViolations)
	line("webhooks", "%s", r.webhookLine())
	if len(r.KillsShort) > 0 {
		line("kills short", "planned kills not carried out: %s", strings.Join(r.KillsShort, ", "))
	}
	tw.Flush()
	if r.Verify != nil {
		fmt.Fprintln(w, "\ninvariant checker (pkg/verify):")
		_ = r.Verify.WriteText(w)
	} else {
		fmt.Fprintln(w, "\ninvariant checker: not run")
	}
	for _, e := range r.Examples {
		fmt.Fprintln(w, "  ", e)
	}
	if r.OK() {
		fmt.Fprintf(w, "\nCHAOS RUN PASSED: 0 lost, 0 paid twice, 0 balance mismatches, 0 overdrafts, every payment final within %v of the last kill, every webhook delivered\n", c.Liveness)
	} else {
		fmt.Fprintln(w, "\nCHAOS RUN FAILED")
	}
}

func mapLine(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

func mapLine64(m map[string]int64) string {
	n := make(map[string]int, len(m))
	for k, v := range m {
		n[k] = int(v)
	}
	return mapLine(n)
}
