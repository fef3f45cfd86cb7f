package httpapi

import (
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/go-cmp/cmp"

	"github.com/finsvc/finance/pkg/dlq"
	"github.com/finsvc/finance/pkg/kafka"
)

// The fuzz target of the admin dead-letter routes' decoders: the path of
// GET /v1/admin/dlq/{topic}/{partition}/{offset} and the query parameters
// of GET /v1/admin/dlq and POST /v1/admin/dlq/replay. The real routes read
// Kafka and PostgreSQL after they decode; fuzzEngine serves their decoders
// on test routes, through a.handle.

// replayJSON is what the replay route decoded (a ReplayRequest holds a
// func).
type replayJSON struct {
	Filter       dlq.Filter
	Actor        string
	DryRun       bool
	Force        bool
	Rate         float64
	KeyRetention time.Duration
	Decodes      bool
}

// adminFuzzEngine is fuzzEngine with the dead-letter decoders' test routes.
func adminFuzzEngine(tb testing.TB) *gin.Engine {
	tb.Helper()
	e := fuzzEngine(tb)
	a := &api{logger: slog.New(slog.DiscardHandler)}
	e.GET("/dlq", a.handle(func(c *gin.Context) error {
		f, err := dlqFilter(c.Request.URL.Query())
		if err != nil {
			return err
		}
		writeJSON(c, http.StatusOK, f)
		return nil
	}))
	e.POST("/dlq/replay", a.handle(func(c *gin.Context) error {
		r, err := replayRequest(c.Request.URL.Query(), "token:1")
		if err != nil {
			return err
		}
		if err := r.Validate(); err != nil { // Operator.Replay's first step
			return err
		}
		writeJSON(c, http.StatusOK, replayJSON{r.Filter, r.Actor, r.DryRun, r.Force, r.Rate, r.KeyRetention, r.DecodeRequest != nil})
		return nil
	}))
	e.GET("/dlq/:topic/:partition/:offset", a.handle(func(c *gin.Context) error {
		p, o, err := dlqAddress(c.Param("partition"), c.Param("offset"))
		if err != nil {
			return err
		}
		// Operator.Get's topic check: a topic of no DLQ is a 404.
		if err := (dlq.Filter{Topic: c.Param("topic")}).Validate(); errors.Is(err, dlq.ErrUnknownTopic) {
			return notFound(err.Error())
		} else if err != nil {
			return err
		}
		writeJSON(c, http.StatusOK, dlq.Entry{Topic: c.Param("topic"), Partition: p, Offset: o})
		return nil
	}))
	return e
}

// FuzzAdminDLQ: any path and query of the dead-letter routes is a 4xx
// problem+json, or a filter that Validate accepts, in range, whose query
// form reads back as itself and which the replay's audit (jsonb) can
// store; a replay with a rate in (0, MaxRate], a positive key retention,
// a topic or all_topics, and a decoder for payments.requested; an address
// of a known topic, a partition and an offset not negative.
func FuzzAdminDLQ(f *testing.F) {
	f.Add(uint8(0), "topic=payments.outcomes&payment_id=7&user_id=3456&since=2026-05-04T10:00:00Z&until=2026-05-05T10:00:00Z&error=unknown&limit=10", "", "", "")
	f.Add(uint8(0), "", "", "", "")
	f.Add(uint8(0), "topic=payments.outcomes.dlq.dlq&limit=10001&bogus=1", "", "", "")
	f.Add(uint8(0), "since=2026-05-05T10:00:00Z&until=2026-05-04T10:00:00Z&user_id=-1", "", "", "")
	f.Add(uint8(0), "limit=1&limit=2&error=%00", "", "", "")
	f.Add(uint8(1), "topic=payments.requested&dry_run=true&rate=0.5&key_retention=1h", "", "", "")
	f.Add(uint8(1), "all_topics=true&force=true", "", "", "")
	f.Add(uint8(1), "", "", "", "")
	f.Add(uint8(1), "topic=payments.events&all_topics=true", "", "", "")
	f.Add(uint8(1), "topic=payments.events&rate=NaN", "", "", "")
	f.Add(uint8(1), "topic=payments.events&rate=1e309&key_retention=-1h&dry_run=yes", "", "", "")
	f.Add(uint8(1), "topic=payments.events&error=a%00b", "", "", "")
	f.Add(uint8(1), "topic=payments.events&error=%FF", "", "", "")
	f.Add(uint8(2), "", kafka.DLQTopic(kafka.TopicOutcomes), "3", "17")
	f.Add(uint8(2), "", kafka.TopicRequested, "0", "0")
	f.Add(uint8(2), "", "payments.nope", "0", "0")
	f.Add(uint8(2), "", kafka.TopicEvents, "-1", "9223372036854775808")
	f.Add(uint8(2), "", kafka.TopicEvents, "2147483648", "+5")
	e := adminFuzzEngine(f)
	f.Fuzz(func(t *testing.T, route uint8, query, topic, partition, offset string) {
		if query != "" && strings.ContainsAny(query, "# ") {
			return
		}
		var u *url.URL
		method := http.MethodGet
		switch route % 3 {
		case 0:
			u = &url.URL{Path: "/dlq", RawQuery: query}
		case 1:
			u, method = &url.URL{Path: "/dlq/replay", RawQuery: query}, http.MethodPost
		case 2:
			if topic == "" || partition == "" || offset == "" || strings.ContainsAny(topic+partition+offset, "/?#") {
				return
			}
			u = &url.URL{Path: "/dlq/" + topic + "/" + partition + "/" + offset}
		}
		r, err := http.NewRequest(method, u.String(), nil)
		if err != nil {
			return
		}
		w, ok := serveRouted(t, e, r)
		if !ok {
			return
		}
		switch route % 3 {
		case 0:
			var f dlq.Filter
			if err := json.Unmarshal(w.Body.Bytes(), &f); err != nil {
				t.Fatal(err)
			}
			wantFilter(t, f, query)
			// The filter as a query reads back as itself.
			again, err := dlqFilter(filterQuery(f))
			if err != nil {
				t.Fatalf("%+v as %q: %v", f, filterQuery(f).Encode(), err)
			}
			if diff := cmp.Diff(f, again); diff != "" {
				t.Fatalf("%q read back (-first +again):\n%s", filterQuery(f).Encode(), diff)
			}
		case 1:
			var rj replayJSON
			if err := json.Unmarshal(w.Body.Bytes(), &rj); err != nil {
				t.Fatal(err)
			}
			wantFilter(t, rj.Filter, query)
			q := r.URL.Query()
			if rj.Rate <= 0 || rj.Rate > dlq.MaxRate || math.IsNaN(rj.Rate) || rj.KeyRetention <= 0 || !rj.Decodes || rj.Actor != "token:1" {
				t.Fatalf("replay %+v accepted from %q", rj, query)
			}
			if (rj.Filter.Topic == "") != (q.Get("all_topics") == "true") {
				t.Fatalf("replay of topic %q accepted with all_topics=%q", rj.Filter.Topic, q.Get("all_topics"))
			}
			if b, _ := json.Marshal(rj.Filter); strings.Contains(string(b), `\u0000`) {
				t.Fatalf("the replay audit cannot store the filter %s (jsonb)", b)
			}
		case 2:
			var got dlq.Entry
			if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			known := false
			for _, name := range kafka.Topics() {
				known = known || got.Topic == name || got.Topic == kafka.DLQTopic(name)
			}
			if !known || got.Partition < 0 || got.Offset < 0 {
				t.Fatalf("address %s/%d/%d accepted from %q %q %q", got.Topic, got.Partition, got.Offset, topic, partition, offset)
			}
		}
	})
}

// wantFilter fails unless f is a filter the operator runs: valid, in range.
func wantFilter(t *testing.T, f dlq.Filter, query string) {
	t.Helper()
	if err := f.Validate(); err != nil {
		t.Fatalf("filter %+v accepted from %q: %v", f, query, err)
	}
	if f.PaymentID < 0 || f.UserID < 0 || f.Limit < 0 || f.Limit > dlq.MaxLimit || f.At != nil {
		t.Fatalf("filter %+v accepted from %q", f, query)
	}
}

// filterQuery is f as the list's query parameters.
func filterQuery(f dlq.Filter) url.Values {
	q := url.Values{}
	set := func(k, v string) {
		if v != "" {
			q.Set(k, v)
		}
	}
	number := func(k string, n int64) {
		if n != 0 {
			q.Set(k, strconv.FormatInt(n, 10))
		}
	}
	set("topic", f.Topic)
	number("payment_id", f.PaymentID)
	number("user_id", f.UserID)
	if !f.Since.IsZero() {
		set("since", f.Since.Format(time.RFC3339Nano))
	}
	if !f.Until.IsZero() {
		set("until", f.Until.Format(time.RFC3339Nano))
	}
	set("error", f.Error)
	number("limit", int64(f.Limit))
	return q
}
