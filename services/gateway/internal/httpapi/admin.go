package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/finsvc/finance/pkg/dlq"
	"github.com/finsvc/finance/pkg/kafka"
	"github.com/finsvc/finance/pkg/payment"
)

// requireAdmin lets only tokens with the admin scope through.
func (a *api) requireAdmin(c *gin.Context) {
	if p, ok := principal(c); !ok || !p.Admin {
		a.fail(c, forbidden("the admin routes need a token with the admin scope"))
		return
	}
	c.Next()
}

// withAdminTimeout bounds an admin request, longer than a business request:
// a paced replay takes its time.
func (a *api) withAdminTimeout(c *gin.Context) {
	ctx, cancel := context.WithTimeout(c.Request.Context(), a.adminTimeout)
	defer cancel()
	c.Request = c.Request.WithContext(ctx)
	c.Next()
}

func dlqDisabled() error {
	return &apiError{http.StatusServiceUnavailable, typeDLQDisabled, "DLQ admin disabled",
		"dlq admin disabled: this gateway has no KAFKA_BROKERS, so it cannot read or replay dead letters"}
}

// The query parameters of the DLQ routes.
var (
	filterParams = []string{"topic", "payment_id", "user_id", "since", "until", "error", "limit"}
	replayParams = append(append([]string{}, filterParams...), "all_topics", "dry_run", "rate", "force", "key_retention")
)

// dlqListJSON is the answer of GET /v1/admin/dlq.
type dlqListJSON struct {
	Count       int         `json:"count"`
	DeadLetters []dlq.Entry `json:"dead_letters"`
}

// listDLQ is GET /v1/admin/dlq?topic=&payment_id=&user_id=&since=&until=&error=&limit=.
func (a *api) listDLQ(c *gin.Context) error {
	if a.dlq == nil {
		return dlqDisabled()
	}
	f, err := dlqFilter(c.Request.URL.Query())
	if err != nil {
		return err
	}
	es, err := a.dlq.List(c.Request.Context(), f)
	if err != nil {
		return err
	}
	if es == nil {
		es = []dlq.Entry{}
	}
	writeJSON(c, http.StatusOK, dlqListJSON{Count: len(es), DeadLetters: es})
	return nil
}

// dlqFilter reads the list's filter from its query parameters.
func dlqFilter(q url.Values) (dlq.Filter, error) {
	var problems []string
	f := dlq.ParseFilter(q, filterParams, &problems)
	if len(problems) > 0 {
		return f, invalid(strings.Join(problems, "; "))
	}
	return f, nil
}

// getDLQ is GET /v1/admin/dlq/{topic}/{partition}/{offset}; topic is a DLQ
// topic or the pipeline topic it belongs to.
func (a *api) getDLQ(c *gin.Context) error {
	if a.dlq == nil {
		return dlqDisabled()
	}
	p, o, err := dlqAddress(c.Param("partition"), c.Param("offset"))
	if err != nil {
		return err
	}
	e, err := a.dlq.Get(c.Request.Context(), c.Param("topic"), p, o)
	if errors.Is(err, dlq.ErrUnknownTopic) {
		return notFound(err.Error())
	}
	if err != nil {
		return err
	}
	writeJSON(c, http.StatusOK, e)
	return nil
}

// dlqAddress reads a dead letter's partition and offset from the path.
func dlqAddress(partition, offset string) (int32, int64, error) {
	p, err := strconv.ParseInt(partition, 10, 32)
	if err != nil || p < 0 {
		return 0, 0, invalid(fmt.Sprintf("partition must be a partition number, got %q", partition))
	}
	o, err := strconv.ParseInt(offset, 10, 64)
	if err != nil || o < 0 {
		return 0, 0, invalid(fmt.Sprintf("offset must be a non-negative integer, got %q", offset))
	}
	return int32(p), o, nil
}

// replayDLQ is POST /v1/admin/dlq/replay with the list filters plus
// all_topics, dry_run, force, rate and key_retention as query parameters.
// It needs topic or all_topics=true: an empty filter would replay every
// dead-letter topic. It answers when the run is over, with the audited
// result, each letter's outcome and why.
func (a *api) replayDLQ(c *gin.Context) error {
	if a.dlq == nil {
		return dlqDisabled()
	}
	p, _ := principal(c)
	req, err := replayRequest(c.Request.URL.Query(), "token:"+strconv.FormatInt(p.UserID, 10))
	if err != nil {
		return err
	}
	res, err := a.dlq.Replay(c.Request.Context(), req)
	if err != nil {
		if res.ID != 0 {
			return fmt.Errorf("replay %d stopped after %d of %d records (audited): %w", res.ID, res.Replayed+res.Skipped, res.Selected, err)
		}
		return err
	}
	writeJSON(c, http.StatusOK, res)
	return nil
}

// replayRequest reads a replay from the query parameters of POST
// /v1/admin/dlq/replay, by actor; the error, a 400, names every problem.
func replayRequest(q url.Values, actor string) (dlq.ReplayRequest, error) {
	var problems []string
	f := dlq.ParseFilter(q, replayParams, &problems)
	allTopics := dlq.ParseBool(q, "all_topics", &problems)
	switch {
	case q.Get("topic") == "" && !allTopics:
		problems = append(problems, fmt.Sprintf("a replay needs topic (one of %s, or its %s topic) or all_topics=true: "+
			"without either it would replay the dead letters of every topic", strings.Join(kafka.Topics(), ", "), kafka.DLQSuffix))
	case q.Get("topic") != "" && allTopics:
		problems = append(problems, fmt.Sprintf("topic=%s and all_topics=true contradict each other: give one", q.Get("topic")))
	}
	dryRun := dlq.ParseBool(q, "dry_run", &problems)
	force := dlq.ParseBool(q, "force", &problems)
	keyRetention := payment.KeyRetention
	if v := q.Get("key_retention"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			problems = append(problems, fmt.Sprintf("key_retention must be a positive duration such as 24h "+
				"(how long the processor keeps idempotency keys), got %q", v))
		}
		keyRetention = d
	}
	rate := float64(dlq.DefaultRate)
	if v := q.Get("rate"); v != "" {
		r, err := strconv.ParseFloat(v, 64)
		if err != nil || r <= 0 || r > dlq.MaxRate {
			problems = append(problems, fmt.Sprintf("rate must be a number above 0 and at most %d (records per second), got %q", dlq.MaxRate, v))
		}
		rate = r
	}
	if len(problems) > 0 {
		return dlq.ReplayRequest{}, invalid(strings.Join(problems, "; "))
	}
	return dlq.ReplayRequest{
		Filter:        f,
		Actor:         actor,
		DryRun:        dryRun,
		Force:         force,
		Rate:          rate,
		KeyRetention:  keyRetention,
		DecodeRequest: dlq.DecodeRequested,
	}, nil
}
