package console

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/finsvc/finance/pkg/webhook"
)

// webhooksView is the delivery log page's data.
type webhooksView struct {
	Endpoints []webhook.Endpoint
	Form      url.Values
	Attempts  []webhook.Attempt
	Selected  bool
}

// WebhooksPage is GET /console/webhooks?endpoint=&event=&since=&until=&limit=:
// the endpoints, and the delivery log of the one selected, newest first.
func (c *Console) WebhooksPage(w http.ResponseWriter, r *http.Request) {
	if c.cfg.Webhooks == nil {
		c.Fail(w, r, http.StatusServiceUnavailable, "Webhooks off", "this gateway has no webhook store")
		return
	}
	q := r.URL.Query()
	v := webhooksView{Form: q}
	p := page{Title: "Webhook deliveries", Nav: "webhooks", Data: &v}
	eps, err := c.cfg.Webhooks.List(r.Context(), nil)
	if err != nil {
		p.Error = "could not list the endpoints: " + err.Error()
		c.render(w, r, http.StatusInternalServerError, "webhooks", p)
		return
	}
	v.Endpoints = eps
	f, problems := logFilter(q)
	if len(problems) > 0 {
		p.Error = "bad filter: " + strings.Join(problems, "; ")
		c.render(w, r, http.StatusBadRequest, "webhooks", p)
		return
	}
	if f.EndpointID != uuid.Nil {
		v.Selected = true
		if v.Attempts, err = c.cfg.Webhooks.Log(r.Context(), f); err != nil {
			p.Error = "could not read the delivery log: " + err.Error()
			c.render(w, r, http.StatusInternalServerError, "webhooks", p)
			return
		}
	}
	c.render(w, r, http.StatusOK, "webhooks", p)
}

// logFilter reads the delivery log's filter; every problem is a sentence.
func logFilter(q url.Values) (webhook.LogFilter, []string) {
	var (
		f        webhook.LogFilter
		problems []string
	)
	for k, vs := range q {
		switch k {
		case "endpoint", "event", "since", "until", "limit":
		default:
			problems = append(problems, fmt.Sprintf("unknown parameter %q (allowed: endpoint, event, since, until, limit)", k))
		}
		if len(vs) > 1 {
			problems = append(problems, fmt.Sprintf("parameter %q is given %d times", k, len(vs)))
		}
	}
	if s := q.Get("endpoint"); s != "" {
		id, err := uuid.Parse(s)
		if err != nil {
			problems = append(problems, fmt.Sprintf("endpoint must be an endpoint id (a UUID), got %q", s))
		}
		f.EndpointID = id
	}
	f.EventID = q.Get("event")
	when := func(name string) time.Time {
		s := q.Get(name)
		if s == "" {
			return time.Time{}
		}
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s must be an RFC 3339 time such as 2026-05-04T10:00:00Z, got %q", name, s))
		}
		return t
	}
	f.Since, f.Until = when("since"), when("until")
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Since.Before(f.Until) {
		problems = append(problems, "since must be before until")
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 1000 {
			problems = append(problems, fmt.Sprintf("limit must be an integer from 1 to 1000, got %q", s))
		}
		f.Limit = n
	}
	if f.EndpointID == uuid.Nil && (f.EventID != "" || !f.Since.IsZero() || !f.Until.IsZero()) {
		problems = append(problems, "choose an endpoint: the delivery log is read per endpoint")
	}
	return f, problems
}
