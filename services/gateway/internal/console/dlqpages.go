package console

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/finsvc/finance/pkg/dlq"
	"github.com/finsvc/finance/pkg/kafka"
)

// dlqReadTimeout bounds reading dead letters for a page, so a broker that
// does not answer gives the operator an error page, not one that never loads.
// A replay is paced, so it is bounded by its request's context alone.
const dlqReadTimeout = 20 * time.Second

// The fields of the dead-letter forms.
var (
	filterFields = []string{"topic", "payment_id", "user_id", "since", "until", "error", "limit"}
	replayFields = append(append([]string{}, filterFields...), "partition", "offset", "dry_run", "rate")
)

// dlqList is the dead-letter list page's data.
type dlqList struct {
	Topics  []string
	Form    url.Values
	Letters []dlq.Entry
	Rate    int
}

// letterView is one dead letter's page.
type letterView struct {
	Entry dlq.Entry
	// Payment is a payments.requested letter's payment, when decodable.
	Payment *dlq.RequestedPayment
	Value   string
	Rate    int
}

// replayView is a replay's result page.
type replayView struct {
	Result dlq.ReplayResult
	One    bool
}

func (c *Console) dlqOff(w http.ResponseWriter, r *http.Request) bool {
	if c.cfg.DLQ != nil {
		return false
	}
	c.Fail(w, r, http.StatusServiceUnavailable, "Dead letters off",
		"this gateway has no KAFKA_BROKERS, so it cannot read or replay dead letters")
	return true
}

// DLQPage is GET /console/dlq?topic=&payment_id=&user_id=&since=&until=&error=&limit=:
// the dead letters the filter selects, oldest first, with a replay form for
// the same filter.
func (c *Console) DLQPage(w http.ResponseWriter, r *http.Request) {
	if c.dlqOff(w, r) {
		return
	}
	q := r.URL.Query()
	data := dlqList{Topics: kafka.Topics(), Form: q, Rate: dlq.DefaultRate}
	p := page{Title: "Dead letters", Nav: "dlq", Data: &data}
	var problems []string
	f := dlq.ParseFilter(q, filterFields, &problems)
	if len(problems) > 0 {
		p.Error = "bad filter: " + strings.Join(problems, "; ")
		c.render(w, r, http.StatusBadRequest, "dlq", p)
		return
	}
	if f.Limit == 0 {
		f.Limit = 100
	}
	ctx, cancel := context.WithTimeout(r.Context(), dlqReadTimeout)
	defer cancel()
	es, err := c.cfg.DLQ.List(ctx, f)
	if err != nil {
		p.Error = "could not list the dead letters: " + err.Error()
		c.render(w, r, http.StatusBadGateway, "dlq", p)
		return
	}
	data.Letters = es
	c.render(w, r, http.StatusOK, "dlq", p)
}

// address reads a dead letter's topic, partition and offset, each problem a sentence.
func address(topic, partition, offset string, problems *[]string) dlq.Address {
	var a dlq.Address
	if topic == "" || (dlq.Filter{Topic: topic}).Validate() != nil {
		*problems = append(*problems, fmt.Sprintf("topic must be one of %s (or its %s topic), got %q",
			strings.Join(kafka.Topics(), ", "), kafka.DLQSuffix, topic))
	}
	p, err := strconv.ParseInt(partition, 10, 32)
	if err != nil || p < 0 {
		*problems = append(*problems, fmt.Sprintf("partition must be a partition number, got %q", partition))
	}
	o, err := strconv.ParseInt(offset, 10, 64)
	if err != nil || o < 0 {
		*problems = append(*problems, fmt.Sprintf("offset must be a non-negative integer, got %q", offset))
	}
	a.Partition, a.Offset = int32(p), o
	return a
}

// LetterPage is GET /console/dlq/{topic}/{partition}/{offset}: one dead
// letter, its headers and value, with dry-run and replay buttons.
func (c *Console) LetterPage(w http.ResponseWriter, r *http.Request) {
	if c.dlqOff(w, r) {
		return
	}
	var problems []string
	at := address(r.PathValue("topic"), r.PathValue("partition"), r.PathValue("offset"), &problems)
	if len(problems) > 0 {
		c.Fail(w, r, http.StatusBadRequest, "Bad address", strings.Join(problems, "; "))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), dlqReadTimeout)
	defer cancel()
	e, err := c.cfg.DLQ.Get(ctx, r.PathValue("topic"), at.Partition, at.Offset)
	switch {
	case errors.Is(err, dlq.ErrNotFound):
		c.Fail(w, r, http.StatusNotFound, "No such dead letter", err.Error()+": past the end of the topic, or dropped by its retention")
		return
	case err != nil:
		c.Fail(w, r, http.StatusBadGateway, "Dead letter not read", err.Error())
		return
	}
	v := letterView{Entry: e, Value: printable(e.Value), Rate: dlq.DefaultRate}
	if e.OriginalTopic == kafka.TopicRequested {
		if p, err := dlq.DecodeRequested(e.Value); err == nil {
			v.Payment = &p
		}
	}
	c.render(w, r, http.StatusOK, "letter", page{Title: "Dead letter " + e.ID(), Nav: "dlq", Data: v})
}

// printable shows a record's value: as text when it is, else as hex.
func printable(b []byte) string {
	for _, x := range b {
		if (x < 0x20 && x != '\n' && x != '\t') || x > 0x7e {
			return fmt.Sprintf("%d bytes, hex: %x", len(b), b)
		}
	}
	return string(b)
}

// Replay is POST /console/dlq/replay. With partition and offset it replays
// (or dry-runs) the one dead letter at that address of topic; without
// them, every letter the filter fields select in topic. Either way through
// dlq.Operator.Replay: paced at rate, audited in dlq_replays as
// "console:<operator>", a payments.requested letter only when its payment
// may be sent again, a letter replayed before never again (the console has
// no force). A second submit of a replayed letter is refused with 409 and
// says when and by which replay it went; an unknown address is a 404; bad
// fields a 400; none of them publishes or records a replay.
func (c *Console) Replay(w http.ResponseWriter, r *http.Request) {
	if c.dlqOff(w, r) {
		return
	}
	if err := r.ParseForm(); err != nil {
		c.Fail(w, r, http.StatusBadRequest, "Bad form", err.Error())
		return
	}
	form := r.PostForm
	var problems []string
	f := dlq.ParseFilter(form, replayFields, &problems)
	dryRun := dlq.ParseBool(form, "dry_run", &problems)
	if form.Get("topic") == "" {
		problems = append(problems, fmt.Sprintf("a replay needs a topic (one of %s): the console does not replay every topic at once",
			strings.Join(kafka.Topics(), ", ")))
	}
	rate := float64(dlq.DefaultRate)
	if v := form.Get("rate"); v != "" {
		x, err := strconv.ParseFloat(v, 64)
		if err != nil || x <= 0 || x > dlq.MaxRate {
			problems = append(problems, fmt.Sprintf("rate must be a number above 0 and at most %d (records per second), got %q", dlq.MaxRate, v))
		}
		rate = x
	}
	one := form.Get("partition") != "" || form.Get("offset") != ""
	if one {
		at := address(form.Get("topic"), form.Get("partition"), form.Get("offset"), &problems)
		f.At = &at
	}
	if len(problems) > 0 {
		c.Fail(w, r, http.StatusBadRequest, "Replay refused", "nothing was replayed: "+strings.Join(problems, "; "))
		return
	}
	if one {
		e, err := c.cfg.DLQ.Get(r.Context(), f.Topic, f.At.Partition, f.At.Offset)
		switch {
		case errors.Is(err, dlq.ErrNotFound):
			c.Fail(w, r, http.StatusNotFound, "No such dead letter",
				"nothing was replayed: "+err.Error()+" (past the end of the topic, or dropped by its retention)")
			return
		case err != nil:
			c.Fail(w, r, http.StatusBadGateway, "Dead letter not read", "nothing was replayed: "+err.Error())
			return
		case e.ReplayedAt != nil && !dryRun:
			c.Fail(w, r, http.StatusConflict, "Already replayed",
				fmt.Sprintf("nothing was replayed: dead letter %s was replayed at %s already; it is never replayed twice from the console "+
					"(financectl dlq replay --force does, if you must)", e.ID(), e.ReplayedAt.UTC().Format("2006-01-02 15:04:05Z")))
			return
		}
	}
	res, err := c.cfg.DLQ.Replay(r.Context(), dlq.ReplayRequest{
		Filter: f, Actor: "console:" + actorOf(r), DryRun: dryRun, Rate: rate, DecodeRequest: dlq.DecodeRequested,
	})
	switch {
	case errors.Is(err, dlq.ErrInvalidFilter) || errors.Is(err, dlq.ErrUnknownTopic):
		c.Fail(w, r, http.StatusBadRequest, "Replay refused", "nothing was replayed: "+err.Error())
		return
	case err != nil && res.ID != 0:
		c.Fail(w, r, http.StatusInternalServerError, "Replay stopped",
			fmt.Sprintf("replay %d stopped after %d of %d letters (audited): %v", res.ID, res.Replayed+res.Skipped, res.Selected, err))
		return
	case err != nil:
		c.Fail(w, r, http.StatusBadGateway, "Replay failed", "nothing was replayed: "+err.Error())
		return
	}
	p := page{Title: "Replay result", Nav: "dlq", Data: replayView{Result: res, One: one}}
	status := http.StatusOK
	switch {
	case one && res.Selected == 0:
		status, p.Error = http.StatusNotFound, "nothing was replayed: the dead letter is no longer there"
	case one && res.Records[0].Outcome == dlq.OutcomeSkipped:
		// Another submit replayed it between the check above and this run.
		status, p.Error = http.StatusConflict, "nothing was replayed: "+res.Records[0].Reason
	case one && !dryRun && res.Replayed == 0:
		status, p.Error = http.StatusConflict, "nothing was replayed: "+res.Records[0].Reason
	case dryRun:
		p.Notice = fmt.Sprintf("dry run %d: nothing was published; it would replay %d of %d", res.ID, res.Outcomes[dlq.OutcomeWouldReplay], res.Selected)
	default:
		p.Notice = fmt.Sprintf("replay %d: %d of %d replayed, %d skipped", res.ID, res.Replayed, res.Selected, res.Skipped)
	}
	c.render(w, r, status, "replay", p)
}
