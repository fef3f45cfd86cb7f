package cli

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/finsvc/finance/pkg/dlq"
	"github.com/finsvc/finance/pkg/kafka"
	"github.com/finsvc/finance/pkg/obs"
	"github.com/finsvc/finance/pkg/payment"
)

// dlqFlags are the flags of financectl dlq.
type dlqFlags struct {
	topic, since, until, errText string
	payment, user                int64
	limit                        int
	dryRun, force, asJSON        bool
	allTopics                    bool
	rate                         float64
	keyRetention, timeout        time.Duration
}

func dlqCommand() *command {
	var f dlqFlags
	return &command{
		name: "dlq",
		args: "list [filters] | show <topic> <partition> <offset> | " +
			"replay --topic T|--all-topics [filters] [--dry-run] [--rate R] [--force] [--key-retention D]",
		summary: "list, show or replay dead letters (<topic>.dlq); replays are paced, skip what was replayed before, " +
			"never re-send a payment request that could pay twice, and are audited in DATABASE_URL",
		flags: func(*env) *flag.FlagSet {
			fs := newFlagSet("dlq")
			fs.StringVar(&f.topic, "topic", "", "only this topic's dead letters: a pipeline topic or its .dlq "+
				"(list: default all; replay: this or --all-topics is required)")
			fs.BoolVar(&f.allTopics, "all-topics", false, "replay: the dead letters of every topic")
			fs.Int64Var(&f.payment, "payment", 0, "only dead letters about payment `ID`")
			fs.Int64Var(&f.user, "user", 0, "only dead letters about user `ID`")
			fs.StringVar(&f.since, "since", "", "only dead-lettered at or after `T`: RFC 3339 or a duration ago (e.g. 2h)")
			fs.StringVar(&f.until, "until", "", "only dead-lettered before `T`: RFC 3339 or a duration ago")
			fs.StringVar(&f.errText, "error", "", "only dead letters whose error or reason contains `TEXT` (any case)")
			fs.IntVar(&f.limit, "limit", dlq.DefaultLimit, fmt.Sprintf("at most `N` dead letters, oldest first (1 to %d)", dlq.MaxLimit))
			fs.BoolVar(&f.dryRun, "dry-run", false, "replay: select and audit, publish nothing")
			fs.BoolVar(&f.force, "force", false, "replay: also dead letters an earlier replay re-published")
			fs.Float64Var(&f.rate, "rate", dlq.DefaultRate, fmt.Sprintf("replay: records per second (at most %d)", dlq.MaxRate))
			fs.DurationVar(&f.keyRetention, "key-retention", payment.KeyRetention, "replay: how long the processor keeps "+
				"idempotency keys; an open payment's request older than this is not re-sent (left for the reconciler)")
			fs.BoolVar(&f.asJSON, "json", false, "print JSON instead of text")
			fs.DurationVar(&f.timeout, "timeout", 5*time.Minute, "give up after this time")
			return fs
		},
		run: func(ctx context.Context, e *env, fs *flag.FlagSet) error {
			if fs.NArg() == 0 {
				return usagef("missing action: want list, show or replay")
			}
			action := fs.Arg(0)
			// Flags may also follow the action: dlq list --user 7.
			if err := fs.Parse(fs.Args()[1:]); err != nil {
				return usagef("%v", err)
			}
			if f.timeout <= 0 {
				return usagef("--timeout %s must be positive", f.timeout)
			}
			switch action {
			case "list", "replay":
				if err := noArgs(fs); err != nil {
					return err
				}
			case "show":
			default:
				return usagef("unknown action %q: want list, show or replay", action)
			}
			filter, err := f.filter(time.Now())
			if err != nil {
				return err
			}
			var addr struct {
				topic     string
				partition int32
				offset    int64
			}
			if action == "show" {
				addr.topic, addr.partition, addr.offset, err = parseAddress(fs.Args())
				if err != nil {
					return err
				}
			}
			if action == "replay" {
				if err := f.replayChecks(); err != nil {
					return err
				}
			}

			ctx, cancel := context.WithTimeout(ctx, f.timeout)
			defer cancel()
			logger, err := obs.NewLogger(e.stderr, e.cfg.LogLevel, "financectl")
			if err != nil {
				return usagef("%v", err)
			}
			pool, err := connect(ctx, e.cfg.Postgres)
			if err != nil {
				return err
			}
			defer pool.Close()
			sec, err := kafka.SecurityOpts(e.cfg.Kafka.Security)
			if err != nil {
				return err
			}
			op, err := dlq.NewOperator(e.cfg.Kafka.Brokers, pool, logger, sec...)
			if err != nil {
				return err
			}
			defer op.Close()

			switch action {
			case "list":
				es, err := op.List(ctx, filter)
				if err != nil {
					return dlqError(err)
				}
				if f.asJSON {
					return writeJSON(e.stdout, es)
				}
				return printEntries(e.stdout, es)
			case "show":
				en, err := op.Get(ctx, addr.topic, addr.partition, addr.offset)
				if err != nil {
					return dlqError(err)
				}
				if f.asJSON {
					return writeJSON(e.stdout, en)
				}
				printEntry(e.stdout, en)
				return nil
			default:
				res, err := op.Replay(ctx, dlq.ReplayRequest{
					Filter: filter, Actor: e.cfg.Actor, DryRun: f.dryRun, Force: f.force, Rate: f.rate,
					KeyRetention: f.keyRetention, DecodeRequest: dlq.DecodeRequested,
				})
				// A replay is no one transaction (it paces its records over
				// minutes, each audited in dlq_replayed_records): its
				// admin_audit row is written once it ends. A dry run
				// publishes nothing and is in dlq_replays alone.
				if !f.dryRun {
					err = f.auditReplay(ctx, newAudit(e, "dlq replay"), pool, res.ID, err)
				}
				if res.ID != 0 {
					if f.asJSON {
						if werr := writeJSON(e.stdout, res); werr != nil {
							return werr
						}
					} else {
						printReplay(e.stdout, res)
					}
				}
				return dlqError(err)
			}
		},
	}
}

// auditReplay records a replay (run id, or 0 when it failed before it had one)
// that ended with err in admin_audit, and returns err, joined with the
// audit's error if the row could not be written.
func (f dlqFlags) auditReplay(ctx context.Context, a audit, pool *pgxpool.Pool, id int64, err error) error {
	topic := f.topic
	if f.allTopics {
		topic = "all"
	}
	target := fmt.Sprintf("replay_id=%d topic=%s", id, topic)
	if err != nil {
		return a.failed(ctx, pool, target, err)
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	return a.record(rctx, pool, target, auditOK)
}

// replayChecks refuses replay flags that make no sense, and a replay that
// names no topic: an empty filter would replay every dead-letter topic.
func (f dlqFlags) replayChecks() error {
	if f.rate <= 0 || f.rate > dlq.MaxRate {
		return usagef("--rate %v must be above 0 and at most %d", f.rate, dlq.MaxRate)
	}
	if f.keyRetention <= 0 {
		return usagef("--key-retention %s must be positive", f.keyRetention)
	}
	switch {
	case f.topic == "" && !f.allTopics:
		return usagef("replay needs --topic T (one of %s, or its %s topic) or --all-topics: "+
			"without either it would replay the dead letters of every topic", strings.Join(kafka.Topics(), ", "), kafka.DLQSuffix)
	case f.topic != "" && f.allTopics:
		return usagef("--topic %s and --all-topics contradict each other: give one", f.topic)
	}
	return nil
}

// filter turns the flags into a dlq.Filter; times are absolute or "ago" from now.
func (f dlqFlags) filter(now time.Time) (dlq.Filter, error) {
	out := dlq.Filter{Topic: f.topic, PaymentID: f.payment, UserID: f.user, Error: f.errText, Limit: f.limit}
	var err error
	if out.Since, err = parseWhen(f.since, now); err != nil {
		return dlq.Filter{}, usagef("--since: %v", err)
	}
	if out.Until, err = parseWhen(f.until, now); err != nil {
		return dlq.Filter{}, usagef("--until: %v", err)
	}
	if f.limit < 1 {
		return dlq.Filter{}, usagef("--limit %d must be from 1 to %d", f.limit, dlq.MaxLimit)
	}
	if err := out.Validate(); err != nil {
		return dlq.Filter{}, usagef("%s", strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	return out, nil
}

// parseWhen reads an RFC 3339 time, or a duration meaning that long before now.
func parseWhen(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time nor a duration ago (like 2h)", s)
}

// parseAddress reads "<topic> <partition> <offset>" or "<topic>/<partition>/<offset>".
func parseAddress(args []string) (string, int32, int64, error) {
	if len(args) == 1 {
		args = strings.Split(args[0], "/")
	}
	if len(args) != 3 {
		return "", 0, 0, usagef("show wants <topic> <partition> <offset> (or topic/partition/offset as in dlq list)")
	}
	p, err := strconv.ParseInt(args[1], 10, 32)
	if err != nil || p < 0 {
		return "", 0, 0, usagef("partition %q is not a partition number", args[1])
	}
	o, err := strconv.ParseInt(args[2], 10, 64)
	if err != nil || o < 0 {
		return "", 0, 0, usagef("offset %q is not an offset", args[2])
	}
	return args[0], int32(p), o, nil
}

// dlqError makes a bad topic a usage error; other errors pass through.
func dlqError(err error) error {
	if errors.Is(err, dlq.ErrUnknownTopic) || errors.Is(err, dlq.ErrInvalidFilter) {
		return usagef("%v", err)
	}
	return err
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func printEntries(w io.Writer, es []dlq.Entry) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DEAD LETTER\tAT\tFROM\tREASON\tPAYMENT\tUSER\tATTEMPTS\tREPLAYED\tERROR")
	for _, e := range es {
		replayed := "-"
		if e.ReplayedAt != nil {
			replayed = e.ReplayedAt.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s/%d/%d\t%s\t%s\t%s\t%d\t%s\t%s\n", e.ID(), e.Timestamp.Format(time.RFC3339),
			e.OriginalTopic, e.OriginalPartition, e.OriginalOffset, e.Reason, orDash(e.PaymentID), orDash(e.UserID),
			e.Attempts, replayed, oneLine(e.Error, 80))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "%d dead letter(s)\n", len(es))
	return nil
}

func printEntry(w io.Writer, e dlq.Entry) {
	replayed := "never"
	if e.ReplayedAt != nil {
		replayed = e.ReplayedAt.Format(time.RFC3339Nano)
	}
	fmt.Fprintf(w, "dead letter:     %s\n", e.ID())
	fmt.Fprintf(w, "dead-lettered:   %s\n", e.Timestamp.Format(time.RFC3339Nano))
	fmt.Fprintf(w, "original:        %s/%d/%d\n", e.OriginalTopic, e.OriginalPartition, e.OriginalOffset)
	fmt.Fprintf(w, "source:          %s\n", e.Source)
	fmt.Fprintf(w, "reason:          %s\n", e.Reason)
	fmt.Fprintf(w, "error:           %s\n", e.Error)
	fmt.Fprintf(w, "attempts:        %d\n", e.Attempts)
	fmt.Fprintf(w, "first seen:      %s\n", e.FirstSeen.Format(time.RFC3339Nano))
	fmt.Fprintf(w, "payment:         %s\n", orDash(e.PaymentID))
	fmt.Fprintf(w, "user:            %s\n", orDash(e.UserID))
	fmt.Fprintf(w, "replayed:        %s\n", replayed)
	fmt.Fprintf(w, "key:             %q\n", e.Key)
	fmt.Fprintf(w, "value (base64):  %s\n", base64.StdEncoding.EncodeToString(e.Value))
	for k, v := range e.Headers {
		fmt.Fprintf(w, "header %s: %q\n", k, v)
	}
}

func printReplay(w io.Writer, r dlq.ReplayResult) {
	mode := ""
	if r.DryRun {
		mode = " (dry run: nothing published)"
	}
	fmt.Fprintf(w, "replay %d by %s%s: %d selected, %d replayed, %d skipped, %.4g/s, key retention %s\n",
		r.ID, r.Actor, mode, r.Selected, r.Replayed, r.Skipped, r.Rate, r.KeyRetention)
	outcomes := make([]string, 0, len(r.Outcomes))
	for o := range r.Outcomes {
		outcomes = append(outcomes, o)
	}
	sort.Strings(outcomes)
	for _, o := range outcomes {
		fmt.Fprintf(w, "  %s: %d%s\n", o, r.Outcomes[o], outcomeLegend[o])
	}
	for _, rr := range r.Records {
		fmt.Fprintf(w, "  %-19s %s -> %s (payment %s, user %s)\n", rr.Outcome, rr.Entry.ID(), rr.Entry.OriginalTopic,
			orDash(rr.Entry.PaymentID), orDash(rr.Entry.UserID))
		if rr.Reason != "" {
			fmt.Fprintf(w, "  %-19s   %s\n", "", rr.Reason)
		}
	}
}

// outcomeLegend explains the outcomes in printReplay's summary.
var outcomeLegend = map[string]string{
	dlq.OutcomeSkipped:           " (replayed before; --force to repeat)",
	dlq.OutcomeSkippedFinal:      " (payment already succeeded or failed)",
	dlq.OutcomeSkippedStale:      " (no payment here with the record's id and uid)",
	dlq.OutcomeSkippedKeyExpired: " (beyond the key retention; left for the reconciler)",
	dlq.OutcomeSkippedClaimed:    " (claimed for the as-is API, which has no key; left for the reconciler)",
}

func orDash(id int64) string {
	if id == 0 {
		return "-"
	}
	return strconv.FormatInt(id, 10)
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		return s[:n-1] + "…"
	}
	return s
}
