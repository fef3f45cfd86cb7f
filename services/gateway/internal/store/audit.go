package store

import (
	"context"
	"fmt"
)

// AdminAction is one audited admin action: who did what to what, and the
// status it was answered with.
type AdminAction struct {
	Actor     string
	Action    string
	Target    string
	Status    int
	RequestID string
}

// RecordAdminAction appends a to admin_audit.
func (s *Store) RecordAdminAction(ctx context.Context, a AdminAction) error {
	if _, err := s.pool.Exec(ctx,
		`INSERT INTO admin_audit (actor, action, target, status, request_id) VALUES ($1, $2, $3, $4, $5)`,
		a.Actor, a.Action, a.Target, a.Status, a.RequestID); err != nil {
		return fmt.Errorf("insert admin audit %s %s: %w", a.Actor, a.Action, err)
	}
	return nil
}
