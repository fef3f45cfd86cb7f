package webhook_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/finsvc/finance/pkg/pgtest"
	"github.com/finsvc/finance/pkg/webhook"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func TestValidate(t *testing.T) {
	t.Parallel()
	p := webhook.Policy{}
	ok := webhook.Spec{URL: "https://93.184.215.14/hook", EventTypes: []string{"payment.failed"}}
	if err := p.Validate(context.Background(), ok); err != nil {
		t.Fatalf("valid spec: %v", err)
	}
	bad := webhook.Spec{URL: "https://10.0.0.1/", EventTypes: []string{"payment.nope"}, Description: strings.Repeat("x", 513)}
	err := p.Validate(context.Background(), bad)
	for _, want := range []string{"private", "unknown event type", "description"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate(bad) = %v, want it to mention %q", err, want)
		}
	}
}

func TestStore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.NewPool(t)
	s := webhook.NewStore(pool)
	user := int64(42)

	e, err := s.Create(ctx, webhook.Spec{URL: "https://93.184.215.14/a", EventTypes: []string{"payment.failed"}, UserID: &user,
		Description: "mine", Enabled: true, CreatedBy: "42"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(e.Secret, "whsec_") || !e.Enabled || *e.UserID != 42 {
		t.Fatalf("created %+v", e)
	}
	if _, err := s.Create(ctx, webhook.Spec{URL: "https://93.184.215.14/all", Enabled: true}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(ctx, e.ID)
	if err != nil || got.Secret != "" {
		t.Fatalf("Get = %+v, %v; the secret must not show", got, err)
	}
	mine, err := s.List(ctx, &user)
	if err != nil || len(mine) != 1 || mine[0].ID != e.ID {
		t.Errorf("List(42) = %v, %v", mine, err)
	}
	if all, err := s.List(ctx, nil); err != nil || len(all) != 2 {
		t.Errorf("List(all) = %d, %v", len(all), err)
	}
	up, err := s.Update(ctx, e.ID, webhook.Spec{URL: "https://93.184.215.14/b", Description: "changed"})
	if err != nil || up.URL != "https://93.184.215.14/b" || up.Enabled || len(up.EventTypes) != 0 || *up.UserID != 42 {
		t.Errorf("Update = %+v, %v", up, err)
	}
	rot, err := s.RotateSecret(ctx, e.ID, time.Hour)
	if err != nil || rot.Secret == e.Secret || rot.PreviousSecretExpiresAt == nil {
		t.Errorf("RotateSecret = %+v, %v", rot, err)
	}
	var prev string
	if err := pool.QueryRow(ctx, `SELECT previous_secret FROM webhook_endpoints WHERE id = $1`, e.ID).Scan(&prev); err != nil || prev != e.Secret {
		t.Errorf("previous secret %q, %v; want the first", prev, err)
	}

	// The log, resend and recover.
	if _, err := pool.Exec(ctx, `INSERT INTO webhook_messages (endpoint_id, user_id, event_id, event_type, payment_id, payload, state, attempts, created_at)
		VALUES ($1, 42, '1:failed', 'payment.failed', 1, '{}', 'failed', 8, now() - interval '2 hours'),
		       ($1, 42, '2:failed', 'payment.failed', 2, '{}', 'failed', 8, now())`, e.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO webhook_attempts (message_id, endpoint_id, user_id, event_id, attempt, status_code, latency_ms, response)
		SELECT id, endpoint_id, user_id, event_id, 1, 500, 12, 'oops' FROM webhook_messages`); err != nil {
		t.Fatal(err)
	}
	log, err := s.Log(ctx, webhook.LogFilter{EndpointID: e.ID, EventID: "2:failed"})
	if err != nil || len(log) != 1 || log[0].StatusCode != 500 || log[0].Response != "oops" {
		t.Errorf("Log = %+v, %v", log, err)
	}
	if n, err := s.Recover(ctx, e.ID, time.Now().Add(-time.Hour)); err != nil || n != 1 {
		t.Errorf("Recover since an hour = %d, %v; want the newer one", n, err)
	}
	if err := s.Resend(ctx, e.ID, "1:failed"); err != nil {
		t.Error(err)
	}
	var pending int
	_ = pool.QueryRow(ctx, `SELECT count(*) FROM webhook_messages WHERE state = 'pending' AND attempts = 0`).Scan(&pending)
	if pending != 2 {
		t.Errorf("%d pending after resend and recover, want 2", pending)
	}
	if err := s.Resend(ctx, e.ID, "9:failed"); !errors.Is(err, webhook.ErrNotFound) {
		t.Errorf("Resend(unknown) = %v", err)
	}
	if err := s.Delete(ctx, e.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, e.ID); !errors.Is(err, webhook.ErrNotFound) {
		t.Errorf("Get after Delete = %v", err)
	}
}
