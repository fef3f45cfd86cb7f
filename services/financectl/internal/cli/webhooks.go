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

			pool, err := connect(ctx, e.cfg.Postgres)
			if err != nil {
				return err
			}
			defer pool.Close()
			st := webhook.NewStore(pool)
			var out any
			switch action {
			case "list":
				var u *int64
				if user != 0 {
					u = &user
				}
				out, err = st.List(ctx, u)
			case "create":
				sp := webhook.Spec{URL: url, EventTypes: splitTypes(), Description: description, Enabled: enabled, CreatedBy: "cli"}
				if user != 0 {
					sp.UserID = &user
				}
				if err := policy.Validate(ctx, sp); err != nil {
					return fmt.Errorf("invalid endpoint: %w", err)
				}
				out, err = st.Create(ctx, sp)
			case "get":
				out, err = st.Get(ctx, endpointID)
			case "update":
				cur, err := st.Get(ctx, endpointID)
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
					return fmt.Errorf("invalid endpoint: %w", err)
				}
				out, err = st.Update(ctx, endpointID, sp)
				if err != nil {
					return err
				}
			case "delete":
				err = st.Delete(ctx, endpointID)
				out = map[string]string{"deleted": endpointID.String()}
			case "rotate-secret":
				out, err = st.RotateSecret(ctx, endpointID, overlap)
			case "attempts":
				f := webhook.LogFilter{EndpointID: endpointID, EventID: event, Limit: limit}
				if f.Since, err = parseTime("since", since); err != nil {
					return err
				}
				if f.Until, err = parseTime("until", until); err != nil {
					return err
				}
				out, err = st.Log(ctx, f)
			case "resend":
				if event == "" {
					return usagef("resend needs --event")
				}
				err = st.Resend(ctx, endpointID, event)
				out = map[string]int{"requeued": 1}
			case "recover":
				t, perr := parseTime("since", since)
				if perr != nil {
					return perr
				}
				if t.IsZero() {
					return usagef("recover needs --since")
				}
				var n int64
				n, err = st.Recover(ctx, endpointID, t)
				out = map[string]int64{"requeued": n}
			default:
				return usagef("unknown action %q", action)
			}
			if errors.Is(err, webhook.ErrNotFound) {
				return fmt.Errorf("%s: no such endpoint or message", action)
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
