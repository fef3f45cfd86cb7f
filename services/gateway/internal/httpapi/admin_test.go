package httpapi_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/finsvc/finance/pkg/auth"
	"github.com/finsvc/finance/pkg/dlq"
	"github.com/finsvc/finance/pkg/kafka"
	"github.com/finsvc/finance/pkg/kafkatest"
	"github.com/finsvc/finance/pkg/obs"
	"github.com/finsvc/finance/pkg/pgtest"
	"github.com/finsvc/finance/pkg/postgres"
	"github.com/finsvc/finance/services/gateway/internal/httpapi"
	"github.com/finsvc/finance/services/gateway/internal/store"
)

// dlqEnv is a gateway with the admin DLQ routes on a broker holding two
// dead letters of payments.outcomes: user 7's (payment 100001) and user 8's
// (undecodable).
type dlqEnv struct {
	*env
	cl *kgo.Client
}

func newDLQEnv(t *testing.T) dlqEnv {
	t.Helper()
	ctx := context.Background()
	cluster := kafkatest.New(t, 2, append(kafka.Topics(), kafka.DLQTopics()...))
	pool, err := postgres.Connect(ctx, pgtest.NewDB(t), 8)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	op, err := dlq.NewOperator(cluster.Brokers(), pool, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(op.Close)
	h := checked(t, httpapi.New(httpapi.Config{
		Logger:   logger,
		Store:    store.New(pool),
		Verifier: auth.NewVerifier(testSecret),
		Registry: obs.NewRegistry(),
		DLQ:      op,
	}))
	cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.Brokers()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	for i, l := range []dlq.Letter{
		{Reason: "unknown_payment", Err: errors.New("payment 100001 not found"), Attempts: 1, PaymentID: 100001, UserID: 7},
		{Reason: "undecodable", Err: errors.New("proto: bad wire type"), Attempts: 1},
	} {
		rec := &kgo.Record{Topic: kafka.TopicOutcomes, Offset: int64(i), Key: kafka.UserKey(int64(7 + i)), Value: []byte{byte('a' + i)}}
		if err := dlq.Publish(ctx, cl, rec, l); err != nil {
			t.Fatal(err)
		}
	}
	return dlqEnv{env: &env{t: t, pool: pool, h: h}, cl: cl}
}

func (d dlqEnv) list(t *testing.T, query string) []dlq.Entry {
	t.Helper()
	w := d.do(req{method: http.MethodGet, path: "/v1/admin/dlq?" + query, token: token(t, 1, true)})
	if w.Code != http.StatusOK {
		t.Fatalf("GET /v1/admin/dlq?%s: %d %s", query, w.Code, w.Body.String())
	}
	got := decodeBody[struct {
		Count       int         `json:"count"`
		DeadLetters []dlq.Entry `json:"dead_letters"`
	}](t, w)
	if got.Count != len(got.DeadLetters) {
		t.Errorf("count %d, %d dead letters", got.Count, len(got.DeadLetters))
	}
	return got.DeadLetters
}

func (d dlqEnv) outcomes(t *testing.T) int64 {
	t.Helper()
	ends, err := kadm.NewClient(d.cl).ListEndOffsets(context.Background(), kafka.TopicOutcomes)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
	return n
}

func TestAdminDLQAuth(t *testing.T) {
	t.Parallel()
	d := newDLQEnv(t)
	disabled := newEnv(t) // no KAFKA_BROKERS: no DLQ operator
	for _, tc := range []struct {
		method, path string
	}{
		{http.MethodGet, "/v1/admin/dlq"},
		{http.MethodGet, "/v1/admin/dlq/payments.outcomes.dlq/0/0"},
		{http.MethodPost, "/v1/admin/dlq/replay?topic=payments.outcomes&dry_run=true"},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			t.Parallel()
			w := d.do(req{method: tc.method, path: tc.path})
			wantProblem(t, w, http.StatusUnauthorized, "unauthorized")
			if w.Header().Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
			wantProblem(t, d.do(req{method: tc.method, path: tc.path, token: token(t, 7, false)}), http.StatusForbidden, "forbidden")

			w = d.do(req{method: tc.method, path: tc.path, token: token(t, 1, true)})
			if w.Code != http.StatusOK && w.Code != http.StatusNotFound {
				t.Errorf("admin: %d %s, want an answer", w.Code, w.Body.String())
			}

			wantProblem(t, disabled.do(req{method: tc.method, path: tc.path, token: token(t, 7, false)}), http.StatusForbidden, "forbidden")
			p := wantProblem(t, disabled.do(req{method: tc.method, path: tc.path, token: token(t, 1, true)}),
				http.StatusServiceUnavailable, "dlq-admin-disabled")
			if p.Title != "DLQ admin disabled" {
				t.Errorf("title = %q", p.Title)
			}
		})
	}
}

func TestAdminDLQListAndShow(t *testing.T) {
	t.Parallel()
	d := newDLQEnv(t)
	values := func(es []dlq.Entry) string {
		s := ""
		for _, e := range es {
			s += string(e.Value)
		}
		return s
	}
	for _, tc := range []struct{ query, want string }{
		{"", "ab"},
		{"user_id=7", "a"},
		{"user_id=8", "b"},
		{"payment_id=100001", "a"},
		{"error=WIRE", "b"},
		{"topic=payments.outcomes", "ab"},
		{"topic=payments.requested.dlq", ""},
		{"since=2000-01-01T00:00:00Z&until=2999-01-01T00:00:00Z", "ab"},
		{"until=2000-01-01T00:00:00Z", ""},
		{"limit=1", "a"},
	} {
		if got := values(d.list(t, tc.query)); got != tc.want {
			t.Errorf("?%s: listed %q, want %q", tc.query, got, tc.want)
		}
	}

	e := d.list(t, "user_id=7")[0]
	path := fmt.Sprintf("/v1/admin/dlq/%s/%d/%d", e.Topic, e.Partition, e.Offset)
	w := d.do(req{method: http.MethodGet, path: path, token: token(t, 1, true)})
	if w.Code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, w.Code, w.Body.String())
	}
	got := decodeBody[dlq.Entry](t, w)
	if diff := cmp.Diff(e, got); diff != "" {
		t.Errorf("show (-want +got):\n%s", diff)
	}
	if got.OriginalTopic != kafka.TopicOutcomes || got.Reason != "unknown_payment" || got.Attempts != 1 || got.FirstSeen.IsZero() {
		t.Errorf("show = %+v", got)
	}
}

func TestAdminDLQBadInput(t *testing.T) {
	t.Parallel()
	d := newDLQEnv(t)
	admin := token(t, 1, true)
	for _, tc := range []struct {
		method, path string
		status       int
		typ          string
	}{
		{http.MethodGet, "/v1/admin/dlq?user_id=x", 400, "invalid-request"},
		{http.MethodGet, "/v1/admin/dlq?payment_id=-1", 400, "invalid-request"},
		{http.MethodGet, "/v1/admin/dlq?since=yesterday", 400, "invalid-request"},
		{http.MethodGet, "/v1/admin/dlq?since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z", 400, "invalid-request"},
		{http.MethodGet, "/v1/admin/dlq?limit=0", 400, "invalid-request"},
		{http.MethodGet, "/v1/admin/dlq?limit=100001", 400, "invalid-request"},
		{http.MethodGet, "/v1/admin/dlq?topic=nope", 400, "invalid-request"},
		{http.MethodGet, "/v1/admin/dlq?bogus=1", 400, "invalid-request"},
		{http.MethodGet, "/v1/admin/dlq?user_id=1&user_id=2", 400, "invalid-request"},
		{http.MethodGet, "/v1/admin/dlq?dry_run=true", 400, "invalid-request"}, // a replay parameter
		{http.MethodGet, "/v1/admin/dlq/payments.outcomes.dlq/x/0", 400, "invalid-request"},
		{http.MethodGet, "/v1/admin/dlq/payments.outcomes.dlq/0/-1", 400, "invalid-request"},
		{http.MethodGet, "/v1/admin/dlq/nope/0/0", 404, "not-found"},
		{http.MethodGet, "/v1/admin/dlq/payments.outcomes.dlq/0/999", 404, "not-found"},
		{http.MethodPost, "/v1/admin/dlq/replay?topic=payments.outcomes&rate=0", 400, "invalid-request"},
		{http.MethodPost, "/v1/admin/dlq/replay?topic=payments.outcomes&rate=fast", 400, "invalid-request"},
		{http.MethodPost, "/v1/admin/dlq/replay?topic=payments.outcomes&dry_run=maybe", 400, "invalid-request"},
		{http.MethodPost, "/v1/admin/dlq/replay?topic=payments.outcomes&since=" + url.QueryEscape("2026-13-01"), 400, "invalid-request"},
		{http.MethodPost, "/v1/admin/dlq/replay?dry_run=true", 400, "invalid-request"},
		{http.MethodPost, "/v1/admin/dlq/replay?all_topics=maybe", 400, "invalid-request"},
		{http.MethodPost, "/v1/admin/dlq/replay?topic=payments.requested&key_retention=0s", 400, "invalid-request"},
		{http.MethodPost, "/v1/admin/dlq/replay?topic=payments.requested&key_retention=soon", 400, "invalid-request"},
		{http.MethodGet, "/v1/admin/dlq?all_topics=true", 400, "invalid-request"}, // a replay parameter
		{http.MethodDelete, "/v1/admin/dlq", 405, "method-not-allowed"},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			t.Parallel()
			wantProblem(t, d.do(req{method: tc.method, path: tc.path, token: admin}), tc.status, tc.typ)
		})
	}
	if n := d.count(`SELECT count(*) FROM dlq_replays`); n != 0 {
		t.Errorf("refused replays audited %d runs, want 0", n)
	}
}

func TestAdminDLQReplay(t *testing.T) {
	t.Parallel()
	d := newDLQEnv(t)
	admin := token(t, 42, true)
	replay := func(query string) dlq.ReplayResult {
		t.Helper()
		w := d.do(req{method: http.MethodPost, path: "/v1/admin/dlq/replay?" + query, token: admin})
		if w.Code != http.StatusOK {
			t.Fatalf("POST replay?%s: %d %s", query, w.Code, w.Body.String())
		}
		return decodeBody[dlq.ReplayResult](t, w)
	}

	dry := replay("topic=payments.outcomes&user_id=7&dry_run=true")
	if dry.Selected != 1 || dry.Replayed != 0 || !dry.DryRun || dry.Records[0].Outcome != dlq.OutcomeWouldReplay {
		t.Errorf("dry run = %+v", dry)
	}
	if n := d.outcomes(t); n != 0 {
		t.Errorf("the dry run published %d records", n)
	}
	res := replay("topic=payments.outcomes&user_id=7&rate=100")
	if res.Selected != 1 || res.Replayed != 1 || res.Actor != "token:42" || res.Rate != 100 {
		t.Errorf("replay = %+v", res)
	}
	if n := d.outcomes(t); n != 1 {
		t.Errorf("payments.outcomes holds %d records after the replay, want 1", n)
	}
	again := replay("topic=payments.outcomes&user_id=7")
	if again.Skipped != 1 || again.Replayed != 0 {
		t.Errorf("second replay = %+v, want one skipped", again)
	}
	if n := d.outcomes(t); n != 1 {
		t.Errorf("payments.outcomes holds %d records after the second replay, want 1", n)
	}
	if got := d.list(t, "user_id=7")[0].ReplayedAt; got == nil {
		t.Error("listed letter has no replayed_at after its replay")
	}
	if n := d.count(`SELECT count(*) FROM dlq_replays WHERE actor = 'token:42' AND finished_at IS NOT NULL`); n != 3 {
		t.Errorf("audited runs = %d, want 3", n)
	}
}
