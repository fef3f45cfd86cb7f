package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/finsvc/finance/pkg/webhook"
)

// webhooksCommand manages webhook endpoints and their delivery log, as the
// gateway's /v1/webhooks routes do, straight on the database.
func webhooksCommand() *command {
	var (
		id, url, types, description, event, allowPrivate string
		user                                             int64
		enabled, allowHTTP                               bool
		since, until                                     string
		limit                                            int
		overlap                                          time.Duration
	)
	return &command{
		name: "webhooks",
		args: "list|create|get|update|delete|rotate-secret|attempts|resend|recover [flags]",
		summary: "webhook endpoints and their delivery log (as the gateway's /v1/webhooks routes): list [--user], create --url " +
			"[--types a,b] [--user] [--description], get|delete --id, update --id [--url --types --description --enabled], " +
			"rotate-secret --id [--overlap 24h], attempts --id [--event --since --until --limit], resend --id --event, " +
			"recover --id --since; JSON on stdout",
		flags: func(*env) *flag.FlagSet {
			fs := newFlagSet("webhooks")
			fs.StringVar(&id, "id", "", "the endpoint's `id`")
			fs.StringVar(&url, "url", "", "the endpoint's `url`")
			fs.StringVar(&types, "types", "", "comma-separated event `types` (none: all)")
			fs.Int64Var(&user, "user", 0, "the `user` whose events it gets (0: every user's)")
			fs.StringVar(&description, "description", "", "a `description`")
			fs.BoolVar(&enabled, "enabled", true, "whether it is enabled")
			fs.StringVar(&event, "event", "", "an event `id` (\"<payment_id>:<status>\")")
			fs.StringVar(&since, "since", "", "RFC 3339 `time`")
			fs.StringVar(&until, "until", "", "RFC 3339 `time`")
			fs.IntVar(&limit, "limit", 100, "most attempts listed")
			fs.DurationVar(&overlap, "overlap", 24*time.Hour, "how long the previous secret still signs after rotate-secret")
			fs.StringVar(&allowPrivate, "allow-private", "", "comma-separated `CIDRs` a URL may point at although private")
			fs.BoolVar(&allowHTTP, "allow-http", false, "accept http:// URLs (dev mode)")
			return fs
		},
		run: func(ctx context.Context, e *env, fs *flag.FlagSet) error {
			if fs.NArg() == 0 {
				return usagef("missing action")
			}
			action := fs.Arg(0)
			if err := fs.Parse(fs.Args()[1:]); err != nil {
				return usagef("%v", err)
			}
			if err := noArgs(fs); err != nil {
				return err
			}
			set := map[string]bool{}
			fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
			allow, err := webhook.ParseAllowlist(allowPrivate)
			if err != nil {
				return usagef("--allow-private: %v", err)
			}
			policy := webhook.Policy{AllowHTTP: allowHTTP, Allow: allow}
			var endpointID uuid.UUID
			if action != "list" && action != "create" {
				if endpointID, err = uuid.Parse(id); err != nil {
					return usagef("%s needs --id, an endpoint's id", action)
				}
			}
			parseTime := func(name, s string) (time.Time, error) {
				if s == "" {
					return time.Time{}, nil
				}
				t, err := time.Parse(time.RFC3339Nano, s)
				if err != nil {
					return t, usagef("--%s=%q: want an RFC 3339 time", name, s)
				}
				return t, nil
			}
			splitTypes := func() []string {
				if types == "" {
					return []string{}
				}
				return strings.Split(types, ",")
			}

			var sinceTime time.Time
			switch action {
			case "list", "create", "get", "update", "delete", "rotate-secret", "attempts":
			case "resend":
				if event == "" {
					return usagef("resend needs --event")
				}
			case "recover":
				if sinceTime, err = parseTime("since", since); err != nil {
					return err
				}
				if sinceTime.IsZero() {
					return usagef("recover needs --since")
				}
			default:
				return usagef("unknown action %q", action)
			}

			pool, err := connect(ctx, e.cfg.Postgres)
			if err != nil {
				return err
			}
			defer pool.Close()
			st := webhook.NewStore(pool)
			// Every change is audited (audit.go): its admin_audit row
			// commits with it, a failure is recorded on its own.
			a := newAudit(e, "webhooks "+action)
			target := "id=" + endpointID.String()
			var out any
			switch action {
			case "list":
				var u *int64
				if user != 0 {
					u = &user
				}
				out, err = st.List(ctx, u)
			case "get":
				out, err = st.Get(ctx, endpointID)
			case "attempts":
				f := webhook.LogFilter{EndpointID: endpointID, EventID: event, Limit: limit}
				if f.Since, err = parseTime("since", since); err != nil {
					return err
				}
				if f.Until, err = parseTime("until", until); err != nil {
					return err
				}
				out, err = st.Log(ctx, f)
			case "create":
				target = "" // the new endpoint's id once it has one
				sp := webhook.Spec{URL: url, EventTypes: splitTypes(), Description: description, Enabled: enabled, CreatedBy: "cli"}
				if user != 0 {
					sp.UserID = &user
				}
				if verr := policy.Validate(ctx, sp); verr != nil {
					err = a.failed(ctx, pool, target, fmt.Errorf("%w endpoint: %w", errInvalid, verr))
					break
				}
				err = a.change(ctx, pool, &target, func(tx pgx.Tx) error {
					ep, err := st.InTx(tx).Create(ctx, sp)
					if err != nil {
						return err
					}
					out, target = ep, "id="+ep.ID.String()
					return nil
				})
			case "update":
				err = a.change(ctx, pool, &target, func(tx pgx.Tx) error {
					ts := st.InTx(tx)
					cur, err := ts.Get(ctx, endpointID)
					if err != nil {
						return err
					}
					sp := webhook.Spec{URL: cur.URL, EventTypes: cur.EventTypes, UserID: cur.UserID, Description: cur.Description, Enabled: cur.Enabled}
					if set["url"] {
						sp.URL = url
					}
					if set["types"] {
						sp.EventTypes = splitTypes()
					}
					if set["description"] {
						sp.Description = description
					}
					if set["enabled"] {
						sp.Enabled = enabled
					}
					if err := policy.Validate(ctx, sp); err != nil {
						return fmt.Errorf("%w endpoint: %w", errInvalid, err)
					}
					out, err = ts.Update(ctx, endpointID, sp)
					return err
				})
			case "delete":
				err = a.change(ctx, pool, &target, func(tx pgx.Tx) error { return st.InTx(tx).Delete(ctx, endpointID) })
				out = map[string]string{"deleted": endpointID.String()}
			case "rotate-secret":
				err = a.change(ctx, pool, &target, func(tx pgx.Tx) error {
					ep, err := st.InTx(tx).RotateSecret(ctx, endpointID, overlap)
					out = ep
					return err
				})
			case "resend":
				target += " event=" + event
				err = a.change(ctx, pool, &target, func(tx pgx.Tx) error { return st.InTx(tx).Resend(ctx, endpointID, event) })
				out = map[string]int{"requeued": 1}
			case "recover":
				target += " since=" + sinceTime.UTC().Format(time.RFC3339Nano)
				var n int64
				err = a.change(ctx, pool, &target, func(tx pgx.Tx) error {
					var err error
					n, err = st.InTx(tx).Recover(ctx, endpointID, sinceTime)
					return err
				})
				out = map[string]int64{"requeued": n}
			}
			if errors.Is(err, webhook.ErrNotFound) {
				// Wrapped, not replaced: err may carry the audit's own failure.
				return fmt.Errorf("%s: no such endpoint or message (%w)", action, err)
			}
			if err != nil {
				return err
			}
			enc := json.NewEncoder(e.stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(out)
		},
	}
}
