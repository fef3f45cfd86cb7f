package httpapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/finsvc/finance/pkg/auth"
	"github.com/finsvc/finance/pkg/dlq"
	"github.com/finsvc/finance/pkg/kafka"
	"github.com/finsvc/finance/pkg/kafkatest"
	"github.com/finsvc/finance/pkg/obs"
	"github.com/finsvc/finance/pkg/payment"
	"github.com/finsvc/finance/pkg/pgtest"
	"github.com/finsvc/finance/pkg/postgres"
	"github.com/finsvc/finance/pkg/reconcile"
	"github.com/finsvc/finance/pkg/webhook"
	"github.com/finsvc/finance/services/gateway/internal/console"
	"github.com/finsvc/finance/services/gateway/internal/httpapi"
	"github.com/finsvc/finance/services/gateway/internal/store"
)

// consoleEnv is a gateway serving the console over HTTP, with PostgreSQL,
// a broker holding dead letters, and a fake processor for resolving.
type consoleEnv struct {
	t       *testing.T
	srv     *httptest.Server
	pool    *pgxpool.Pool
	cl      *kgo.Client
	op      *dlq.Operator
	letters []dlq.Entry // payments.outcomes dead letters of users 7, 8 and 9
	// processor answers lookups: key → resource.
	processor map[string]reconcile.Resource
	admin     string // an admin token
}

// consoleOptions vary the console's setup.
type consoleOptions struct {
	noProcessor bool
}

func newConsoleEnv(t *testing.T, o consoleOptions) *consoleEnv {
	t.Helper()
	ctx := context.Background()
	cluster := kafkatest.New(t, 1, append(kafka.Topics(), kafka.DLQTopics()...))
	dbURL := pgtest.NewDB(t)
	pool, err := postgres.Connect(ctx, dbURL, 8)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	// The resolutions go through finance_reconciler (migration 00015), as
	// make run and the chart configure GATEWAY_RECONCILE_DATABASE_URL.
	ru, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	ru.User = url.User("finance_reconciler")
	reconcilePool, err := postgres.Connect(ctx, ru.String(), 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reconcilePool.Close)
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	op, err := dlq.NewOperator(cluster.Brokers(), pool, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(op.Close)
	ce := &consoleEnv{t: t, pool: pool, op: op, processor: map[string]reconcile.Resource{}, admin: token(t, 1, true)}

	procURL := ""
	if !o.noProcessor {
		proc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			key, _ := strings.CutPrefix(r.URL.Path, "/v2/payments/")
			res, ok := ce.processor[key]
			w.Header().Set("Content-Type", "application/json")
			if !ok {
				w.WriteHeader(http.StatusNotFound)
				_, _ = w.Write([]byte(`{"error":"not_found"}`))
				return
			}
			res.IdempotencyKey = key
			_ = json.NewEncoder(w).Encode(res)
		}))
		t.Cleanup(proc.Close)
		procURL = proc.URL
	}
	verifier := auth.NewVerifier(testSecret)
	con, err := console.New(console.Config{
		Logger: logger, Pool: pool, ReconcilePool: reconcilePool, Verify: verifier.FromHeader, DLQ: op, Webhooks: webhook.NewStore(pool),
		ProcessorURL: procURL, ProcessorStatementURL: "none", RateLimit: 100,
	})
	if err != nil {
		t.Fatal(err)
	}
	h := httpapi.New(httpapi.Config{
		Logger: logger, Store: store.New(pool), Verifier: verifier, Registry: obs.NewRegistry(),
		DLQ: op, Webhooks: webhook.NewStore(pool), Console: con,
	})
	ce.srv = httptest.NewServer(h)
	t.Cleanup(ce.srv.Close)

	ce.cl, err = kgo.NewClient(kgo.SeedBrokers(cluster.Brokers()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ce.cl.Close)
	for i := range 3 {
		user := int64(7 + i)
		rec := &kgo.Record{Topic: kafka.TopicOutcomes, Offset: int64(i), Key: kafka.UserKey(user), Value: []byte{byte('a' + i)}}
		if err := dlq.Publish(ctx, ce.cl, rec, dlq.Letter{Reason: "unknown_payment", Err: errors.New("payment not found"),
			Attempts: 1, PaymentID: 100001 + int64(i), UserID: user}); err != nil {
			t.Fatal(err)
		}
	}
	if ce.letters, err = op.List(ctx, dlq.Filter{}); err != nil || len(ce.letters) != 3 {
		t.Fatalf("dead letters: %v %v", ce.letters, err)
	}
	return ce
}

// answer is a console response.
type answer struct {
	status int
	header http.Header
	body   string
}

// request is a console request: form nil sends a GET.
type request struct {
	path    string
	form    url.Values
	session string            // the cookie's token; "" none
	header  map[string]string // e.g. Sec-Fetch-Site
}

// do sends r as a browser on the console's own pages does (same-origin),
// without following redirects.
func (ce *consoleEnv) do(r request) answer {
	ce.t.Helper()
	method, body := http.MethodGet, io.Reader(nil)
	if r.form != nil {
		method, body = http.MethodPost, strings.NewReader(r.form.Encode())
	}
	req, err := http.NewRequest(method, ce.srv.URL+r.path, body)
	if err != nil {
		ce.t.Fatal(err)
	}
	if r.form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		req.Header.Set("Origin", ce.srv.URL)
	}
	if r.session != "" {
		req.AddCookie(&http.Cookie{Name: console.CookieName, Value: r.session})
	}
	for k, v := range r.header {
		req.Header.Set(k, v)
	}
	cl := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := cl.Do(req)
	if err != nil {
		ce.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		ce.t.Fatal(err)
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// expect fails unless a has status and its body holds every text.
func (ce *consoleEnv) expect(what string, a answer, status int, texts ...string) {
	ce.t.Helper()
	if a.status != status {
		ce.t.Errorf("%s: status %d, want %d; body:\n%s", what, a.status, status, a.body)
		return
	}
	for _, s := range texts {
		if !strings.Contains(a.body, s) {
			ce.t.Errorf("%s: the page does not say %q; body:\n%s", what, s, a.body)
		}
	}
}

func (ce *consoleEnv) count(sql string, args ...any) int64 {
	ce.t.Helper()
	var n int64
	if err := ce.pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		ce.t.Fatalf("query %q: %v", sql, err)
	}
	return n
}

// outcomes is how many records payments.outcomes holds: what replays published.
func (ce *consoleEnv) outcomes() int64 {
	ce.t.Helper()
	ends, err := kadm.NewClient(ce.cl).ListEndOffsets(context.Background(), kafka.TopicOutcomes)
	if err != nil {
		ce.t.Fatal(err)
	}
	var n int64
	ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
	return n
}

// consoleAudit is one admin_audit row, as the console tests check it.
type consoleAudit struct {
	Actor, Action, Target string
	Status                int
}

func (ce *consoleEnv) audit() []consoleAudit {
	ce.t.Helper()
	rows, _ := ce.pool.Query(context.Background(), `SELECT actor, action, target, status FROM admin_audit ORDER BY id`)
	got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[consoleAudit])
	if err != nil {
		ce.t.Fatal(err)
	}
	return got
}

func letterForm(l dlq.Entry, dryRun bool) url.Values {
	return url.Values{"topic": {l.Topic}, "partition": {fmt.Sprint(l.Partition)}, "offset": {fmt.Sprint(l.Offset)},
		"dry_run": {fmt.Sprint(dryRun)}, "rate": {"50"}}
}

// TestConsoleLogin: only an admin token signs in; the cookie is HttpOnly,
// Secure and SameSite=Strict; pages need it; every attempt is audited
// without the token.
func TestConsoleLogin(t *testing.T) {
	t.Parallel()
	ce := newConsoleEnv(t, consoleOptions{})

	ce.expect("the overview without a session", ce.do(request{path: "/console"}), http.StatusUnauthorized, "sign in", `href="/console/login"`)
	ce.expect("the login page", ce.do(request{path: "/console/login"}), http.StatusOK, `name="token"`)
	ce.expect("no token", ce.do(request{path: "/console/login", form: url.Values{"token": {""}}}), http.StatusBadRequest, "paste an admin token")
	ce.expect("a forged token", ce.do(request{path: "/console/login", form: url.Values{"token": {"eyJhbGciOiJIUzI1NiJ9.e30.x"}}}),
		http.StatusUnauthorized, "the token was refused")
	user := token(t, 7, false)
	ce.expect("a user's token", ce.do(request{path: "/console/login", form: url.Values{"token": {user}}}), http.StatusForbidden, "no admin scope")

	a := ce.do(request{path: "/console/login", form: url.Values{"token": {ce.admin}}})
	if a.status != http.StatusSeeOther || a.header.Get("Location") != "/console" {
		t.Fatalf("admin sign-in: %d to %q, want 303 to /console", a.status, a.header.Get("Location"))
	}
	ck := a.header.Get("Set-Cookie")
	for _, want := range []string{console.CookieName + "=" + ce.admin, "Path=/console", "HttpOnly", "Secure", "SameSite=Strict"} {
		if !strings.Contains(ck, want) {
			t.Errorf("Set-Cookie %q lacks %q", ck, want)
		}
	}

	ce.expect("the overview signed in", ce.do(request{path: "/console", session: ce.admin}), http.StatusOK, "backlog", "admin:1")
	ce.expect("the overview with a user's token", ce.do(request{path: "/console", session: user}), http.StatusForbidden, "admin scope")
	ce.expect("the overview with a bad cookie", ce.do(request{path: "/console", session: "nope"}), http.StatusUnauthorized, "refused")

	out := ce.do(request{path: "/console/logout", form: url.Values{}, session: ce.admin})
	if out.status != http.StatusSeeOther || !strings.Contains(out.header.Get("Set-Cookie"), "Max-Age=0") {
		t.Errorf("logout: %d, Set-Cookie %q; want 303 and the cookie cleared", out.status, out.header.Get("Set-Cookie"))
	}

	want := []consoleAudit{
		{"anonymous", "POST /console/login", "", 400},
		{"anonymous", "POST /console/login", "", 401},
		{"7", "POST /console/login", "", 403},
		{"admin:1", "POST /console/login", "", 303},
		{"admin:1", "POST /console/logout", "", 303},
	}
	if diff := cmp.Diff(want, ce.audit()); diff != "" {
		t.Errorf("admin_audit (-want +got):\n%s", diff)
	}
	for _, r := range ce.audit() {
		if strings.Contains(r.Target, "eyJ") {
			t.Errorf("the audit holds a token: %+v", r)
		}
	}
}

// TestConsoleRefusesCrossOrigin: a form posted from another site is
// refused before anything runs, with or without a session.
func TestConsoleRefusesCrossOrigin(t *testing.T) {
	t.Parallel()
	ce := newConsoleEnv(t, consoleOptions{})
	l := ce.letters[0]
	for name, h := range map[string]map[string]string{
		"Sec-Fetch-Site cross-site":  {"Sec-Fetch-Site": "cross-site"},
		"Sec-Fetch-Site same-site":   {"Sec-Fetch-Site": "same-site"},
		"another Origin, no Fetch":   {"Sec-Fetch-Site": "", "Origin": "https://evil.example"},
		"cross-site with no session": {"Sec-Fetch-Site": "cross-site"},
	} {
		session := ce.admin
		if strings.Contains(name, "no session") {
			session = ""
		}
		ce.expect(name, ce.do(request{path: "/console/dlq/replay", form: letterForm(l, false), session: session, header: h}),
			http.StatusForbidden, "Cross-origin request refused", "nothing was done")
		ce.expect(name+" (login)", ce.do(request{path: "/console/login", form: url.Values{"token": {ce.admin}}, header: h}),
			http.StatusForbidden, "Cross-origin request refused")
	}
	if n := ce.count(`SELECT count(*) FROM dlq_replays`); n != 0 {
		t.Errorf("%d replays recorded after cross-origin posts, want 0", n)
	}
	if n := ce.outcomes(); n != 0 {
		t.Errorf("payments.outcomes holds %d records after cross-origin posts, want 0", n)
	}
}

// TestConsoleBadInput: bad filters and bad replays get a clear message and
// a 4xx, and nothing is replayed or recorded as a replay.
func TestConsoleBadInput(t *testing.T) {
	t.Parallel()
	ce := newConsoleEnv(t, consoleOptions{})
	l := ce.letters[0]
	past := letterForm(l, false)
	past.Set("offset", "999")
	badRate := letterForm(l, false)
	badRate.Set("rate", "0")
	noTopic := letterForm(l, false)
	noTopic.Del("topic")
	noTopic.Del("partition")
	noTopic.Del("offset")
	cases := []struct {
		name   string
		r      request
		status int
		says   string
	}{
		{"dlq: user id not a number", request{path: "/console/dlq?user_id=abc"}, 400, "user_id must be a positive integer"},
		{"dlq: unknown topic", request{path: "/console/dlq?topic=nope"}, 400, "unknown topic"},
		{"dlq: since not a time", request{path: "/console/dlq?since=yesterday"}, 400, "since must be an RFC 3339 time"},
		{"dlq: since after until", request{path: "/console/dlq?since=2026-05-04T10:00:00Z&until=2026-05-03T10:00:00Z"}, 400, "is not before until"},
		{"dlq: limit too big", request{path: "/console/dlq?limit=100000"}, 400, "limit must be an integer from 1 to"},
		{"dlq: unknown parameter", request{path: "/console/dlq?colour=red"}, 400, `unknown query parameter &#34;colour&#34;`},
		{"letter: bad offset", request{path: "/console/dlq/payments.outcomes/0/x"}, 400, "offset must be a non-negative integer"},
		{"letter: past the end", request{path: "/console/dlq/payments.outcomes.dlq/0/999"}, 404, "dead letter not found"},
		{"unknown: bad user", request{path: "/console/unknown?user_id=-1"}, 400, "user_id must be a positive integer"},
		{"webhooks: bad endpoint", request{path: "/console/webhooks?endpoint=xyz"}, 400, "endpoint must be an endpoint id"},
		{"webhooks: event without endpoint", request{path: "/console/webhooks?event=1:succeeded"}, 400, "choose an endpoint"},
		{"webhooks: bad since", request{path: "/console/webhooks?since=now"}, 400, "since must be an RFC 3339 time"},
		{"replay: unknown offset", request{path: "/console/dlq/replay", form: past}, 404, "nothing was replayed"},
		{"replay: rate 0", request{path: "/console/dlq/replay", form: badRate}, 400, "rate must be a number above 0"},
		{"replay: no topic", request{path: "/console/dlq/replay", form: noTopic}, 400, "a replay needs a topic"},
		{"replay: bad partition", request{path: "/console/dlq/replay", form: url.Values{"topic": {l.Topic}, "partition": {"-1"}, "offset": {"0"}}}, 400, "partition must be a partition number"},
		{"replay: unknown field", request{path: "/console/dlq/replay", form: url.Values{"topic": {l.Topic}, "force": {"true"}}}, 400, `unknown query parameter &#34;force&#34;`},
		{"resolve: not an id", request{path: "/console/unknown/abc/resolve", form: url.Values{}}, 400, "payment id must be a positive integer"},
		{"resolve: no such payment", request{path: "/console/unknown/424242/resolve", form: url.Values{}}, 404, "no payment 424242"},
	}
	for _, c := range cases {
		c.r.session = ce.admin
		ce.expect(c.name, ce.do(c.r), c.status, c.says)
	}
	if n := ce.count(`SELECT count(*) FROM dlq_replays`); n != 0 {
		t.Errorf("%d replays recorded after bad input, want 0", n)
	}
	if n := ce.outcomes(); n != 0 {
		t.Errorf("payments.outcomes holds %d records after bad input, want 0", n)
	}
}

// TestConsoleReplayOnce: a dry run publishes nothing; a replay publishes
// the letter once; the same form submitted again, or two submits at once,
// never publish it twice, and say so with a 409. Every submit is audited.
func TestConsoleReplayOnce(t *testing.T) {
	t.Parallel()
	ce := newConsoleEnv(t, consoleOptions{})
	l := ce.letters[0]

	ce.expect("the list", ce.do(request{path: "/console/dlq?topic=payments.outcomes", session: ce.admin}), http.StatusOK,
		fmt.Sprintf("/console/dlq/%s/%d/%d", l.Topic, l.Partition, l.Offset), "payment not found")
	ce.expect("the letter", ce.do(request{path: fmt.Sprintf("/console/dlq/%s/%d/%d", l.Topic, l.Partition, l.Offset), session: ce.admin}),
		http.StatusOK, "unknown_payment", `id="replay"`, "never")
	ce.expect("dry run", ce.do(request{path: "/console/dlq/replay", form: letterForm(l, true), session: ce.admin}), http.StatusOK,
		"would_replay", "nothing was published")
	if n := ce.outcomes(); n != 0 {
		t.Fatalf("payments.outcomes holds %d records after a dry run, want 0", n)
	}
	ce.expect("replay", ce.do(request{path: "/console/dlq/replay", form: letterForm(l, false), session: ce.admin}), http.StatusOK,
		">replayed<", "1 of 1 replayed")
	ce.expect("the same replay again", ce.do(request{path: "/console/dlq/replay", form: letterForm(l, false), session: ce.admin}),
		http.StatusConflict, "Already replayed", "nothing was replayed")
	if n := ce.outcomes(); n != 1 {
		t.Errorf("payments.outcomes holds %d records after a replay and its second submit, want 1", n)
	}

	// Two submits of another letter at once: one publishes, the other is refused.
	l2 := ce.letters[1]
	var (
		wg       sync.WaitGroup
		statuses [2]int
	)
	for i := range 2 {
		wg.Go(func() {
			statuses[i] = ce.do(request{path: "/console/dlq/replay", form: letterForm(l2, false), session: ce.admin}).status
		})
	}
	wg.Wait()
	if ok, conflict := count(statuses[:], 200), count(statuses[:], 409); ok != 1 || conflict != 1 {
		t.Errorf("two submits at once: statuses %v, want one 200 and one 409", statuses)
	}
	if n := ce.outcomes(); n != 2 {
		t.Errorf("payments.outcomes holds %d records, want 2 (each letter once)", n)
	}
	if n := ce.count(`SELECT count(*) FROM dlq_replayed_records WHERE outcome = 'replayed'`); n != 2 {
		t.Errorf("%d letters recorded as replayed, want 2", n)
	}
	if n := ce.count(`SELECT count(*) FROM dlq_replays WHERE actor = 'console:admin:1'`); n < 2 {
		t.Errorf("%d replay runs by console:admin:1, want at least the dry run and the replay", n)
	}

	target := url.Values{"topic": {l.Topic}, "partition": {fmt.Sprint(l.Partition)}, "offset": {fmt.Sprint(l.Offset)}, "rate": {"50"}}
	dry, real := target, url.Values{}
	for k, v := range target {
		real[k] = v
	}
	dry = url.Values{"dry_run": {"true"}}
	real.Set("dry_run", "false")
	for k, v := range target {
		dry[k] = v
	}
	got := ce.audit()[:3]
	want := []consoleAudit{
		{"admin:1", "POST /console/dlq/replay", dry.Encode(), 200},
		{"admin:1", "POST /console/dlq/replay", real.Encode(), 200},
		{"admin:1", "POST /console/dlq/replay", real.Encode(), 409},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("admin_audit (-want +got):\n%s", diff)
	}
}

func count(xs []int, x int) int {
	n := 0
	for _, v := range xs {
		if v == x {
			n++
		}
	}
	return n
}

// seedUnknown writes user 20 (balance 10000) with unknown payment 300001,
// a debit of 3000 held, unknown for ten minutes; it returns its uid.
func (ce *consoleEnv) seedUnknown() uuid.UUID {
	ce.t.Helper()
	uid := uuid.Must(uuid.NewV7())
	for _, s := range []string{
		`INSERT INTO merchants (id, name) VALUES (4593, 'Amazon') ON CONFLICT DO NOTHING`,
		`INSERT INTO wallets (user_id, balance, held, event_seq) VALUES (20, 10000, 3000, 2)`,
		fmt.Sprintf(`INSERT INTO payments (id, uid, user_id, merchant_id, amount, status, idempotency_key, request_hash, hold, failure_reason, created_at, updated_at)
			VALUES (300001, '%s', 20, 4593, -3000, 'unknown', 'k-300001', 'h', 3000, 'processor timeout', now() - interval '11 minutes', now() - interval '10 minutes')`, uid),
		`INSERT INTO payment_transitions (payment_id, user_id, user_seq, from_status, to_status, actor) VALUES
			(300001, 20, 1, '', 'accepted', 'gateway'), (300001, 20, 2, 'accepted', 'unknown', 'status-consumer')`,
	} {
		if _, err := ce.pool.Exec(context.Background(), s); err != nil {
			ce.t.Fatalf("seed: %v\n%s", err, s)
		}
	}
	return uid
}

// TestConsoleResolve: "resolve from processor" settles an unknown payment
// by the reconciler's rules, emits its event, and refuses a second time.
func TestConsoleResolve(t *testing.T) {
	t.Parallel()
	ce := newConsoleEnv(t, consoleOptions{})
	uid := ce.seedUnknown()
	ce.expect("the unknown payments", ce.do(request{path: "/console/unknown", session: ce.admin}), http.StatusOK,
		"300001", "processor timeout", "Resolve from processor")

	ce.processor[payment.ProcessorKey(uid)] = reconcile.Resource{ID: "pay_1", UserID: 20, Amount: -3000, Status: "succeeded"}
	ce.expect("resolve", ce.do(request{path: "/console/unknown/300001/resolve", form: url.Values{}, session: ce.admin}), http.StatusOK,
		"resolved: unknown → succeeded", "pay_1")
	var status string
	var balance, held int64
	if err := ce.pool.QueryRow(context.Background(), `SELECT p.status, w.balance, w.held FROM payments p JOIN wallets w USING (user_id) WHERE p.id = 300001`).
		Scan(&status, &balance, &held); err != nil {
		t.Fatal(err)
	}
	if status != "succeeded" || balance != 7000 || held != 0 {
		t.Errorf("after resolving: status %s, balance %d, held %d; want succeeded, 7000, 0", status, balance, held)
	}
	if n := ce.count(`SELECT count(*) FROM outbox WHERE topic = 'payments.events'`); n != 1 {
		t.Errorf("%d events in the outbox, want the resolution's 1", n)
	}
	ce.expect("resolve again", ce.do(request{path: "/console/unknown/300001/resolve", form: url.Values{}, session: ce.admin}),
		http.StatusConflict, "payment 300001 is succeeded, not unknown")
	if n := ce.count(`SELECT count(*) FROM payment_transitions WHERE payment_id = 300001 AND actor = 'reconciler'`); n != 1 {
		t.Errorf("%d reconciler transitions, want 1", n)
	}
	got := ce.audit()
	if len(got) != 2 || got[0].Target != "id=300001" || got[0].Status != 200 || got[1].Status != 409 {
		t.Errorf("admin_audit = %+v, want the resolve (200) and the refused second one (409), target id=300001", got)
	}
	ce.expect("dry-run pass", ce.do(request{path: "/console/reconcile", form: url.Values{}, session: ce.admin}), http.StatusOK,
		"dry run: nothing changed", "unknown payments: 0")
}

// TestConsoleResolveNeedsProcessor: without a processor URL the page says
// how to set one, the button is disabled, and a post is a 503.
func TestConsoleResolveNeedsProcessor(t *testing.T) {
	t.Parallel()
	ce := newConsoleEnv(t, consoleOptions{noProcessor: true})
	ce.seedUnknown()
	ce.expect("the unknown payments", ce.do(request{path: "/console/unknown", session: ce.admin}), http.StatusOK,
		"GATEWAY_PROCESSOR_URL", "disabled")
	ce.expect("resolve", ce.do(request{path: "/console/unknown/300001/resolve", form: url.Values{}, session: ce.admin}),
		http.StatusServiceUnavailable, "GATEWAY_PROCESSOR_URL")
	if n := ce.count(`SELECT count(*) FROM payments WHERE status = 'unknown'`); n != 1 {
		t.Errorf("%d unknown payments, want 1 (nothing resolved)", n)
	}
}

// TestConsoleOverview: the overview counts the backlog, the unknown
// payments and the last window's rates, and draws the drain at L.
func TestConsoleOverview(t *testing.T) {
	t.Parallel()
	ce := newConsoleEnv(t, consoleOptions{})
	ce.seedUnknown()
	for i := range 5 {
		ce.exec(fmt.Sprintf(`INSERT INTO payments (id, user_id, merchant_id, amount, status, idempotency_key, request_hash)
			VALUES (%d, 20, 4593, -1, 'accepted', 'acc-%[1]d', 'h')`, 400001+i))
	}
	ce.exec(`INSERT INTO payment_transitions (payment_id, user_id, user_seq, from_status, to_status, actor)
		SELECT id, 20, 10 + id - 400001, '', 'accepted', 'gateway' FROM payments WHERE id > 400000`)
	a := ce.do(request{path: "/console/overview", session: ce.admin})
	ce.expect("the overview fragment", a, http.StatusOK, `id="backlog">5<`, `<a href="/console/unknown">1</a>`,
		`id="rate-accepted">0.6/s`, `id="drain">0s<`, `utilization of L = 100/s`)
	if strings.Contains(a.body, "<html") {
		t.Error("the fragment is a whole page")
	}
}

func (ce *consoleEnv) exec(sql string) {
	ce.t.Helper()
	if _, err := ce.pool.Exec(context.Background(), sql); err != nil {
		ce.t.Fatalf("exec: %v\n%s", err, sql)
	}
}
