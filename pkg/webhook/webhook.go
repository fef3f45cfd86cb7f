// Package webhook is the one home of the Finance Service's webhooks: the
// event types and their payload {id, type, created_at, data}, the Standard
// Webhooks v1 signature (headers webhook-id, webhook-timestamp,
// webhook-signature) with its secrets and a Verifier for receivers, and the
// URL policy that keeps deliveries away from private addresses. The
// webhook-delivery service sends, the gateway and financectl register
// endpoints, and a receiver verifies with Verifier.
package webhook

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/finsvc/finance/pkg/ledger"
	"github.com/finsvc/finance/pkg/payment"
)

// Type is a webhook event type.
type Type string

// The event types. A payment's change on payments.events maps to one of
// them (TypeOf); resolved is a succeeded or failed status set by the
// reconciler, which resolves payments left unknown or stuck.
const (
	TypeAccepted  Type = "payment.accepted"
	TypeSucceeded Type = "payment.succeeded"
	TypeFailed    Type = "payment.failed"
	TypeUnknown   Type = "payment.unknown"
	TypeResolved  Type = "payment.resolved"
)

// Types lists every event type, in the order the docs show them.
func Types() []Type {
	return []Type{TypeAccepted, TypeSucceeded, TypeFailed, TypeUnknown, TypeResolved}
}

// ParseType returns s as a Type, or an error naming the known types.
func ParseType(s string) (Type, error) {
	t := Type(s)
	if slices.Contains(Types(), t) {
		return t, nil
	}
	names := make([]string, 0, len(Types()))
	for _, t := range Types() {
		names = append(names, string(t))
	}
	return "", fmt.Errorf("unknown event type %q: want one of %s", s, strings.Join(names, ", "))
}

// resolvedPrefixes start the audit reason of a status set by the
// reconciler (pkg/reconcile): "reconciled: ..." when it resolved an unknown
// or stuck payment, "recovered: ..." after a database restore.
var resolvedPrefixes = []string{"reconciled:", "recovered:"}

// TypeOf maps a payments.events change to its webhook type; ok is false for
// a change no webhook announces (processing).
func TypeOf(ev ledger.Event) (t Type, ok bool) {
	switch ev.Status {
	case payment.StatusAccepted:
		return TypeAccepted, true
	case payment.StatusUnknown:
		return TypeUnknown, true
	case payment.StatusSucceeded, payment.StatusFailed:
		for _, p := range resolvedPrefixes {
			if strings.HasPrefix(ev.Reason, p) {
				return TypeResolved, true
			}
		}
		if ev.Status == payment.StatusSucceeded {
			return TypeSucceeded, true
		}
		return TypeFailed, true
	}
	return "", false
}

// Data is a webhook's data: the payment as GET /v1/payments/{id} shows it
// at the change, plus the change's per-user sequence number, by which a
// receiver orders a user's events.
type Data struct {
	payment.View
	UserSeq int64 `json:"user_seq"`
}

// Payload is a webhook's body.
type Payload struct {
	// ID is the event's id, "<payment_id>:<status>": the same on every
	// attempt and resend, and the webhook-id header.
	ID        string `json:"id"`
	Type      Type   `json:"type"`
	CreatedAt string `json:"created_at"`
	Data      Data   `json:"data"`
}

// Stored is what the event does not carry of a payment and the webhook
// shows: its idempotency key and creation time, read from the payments table.
type Stored struct {
	IdempotencyKey string
	CreatedAt      time.Time
}

// NewPayload returns the webhook of change ev of type t, with the payment's
// stored fields p. The status, failure reason and updated_at are the
// change's, not the payment's latest.
func NewPayload(t Type, ev ledger.Event, p Stored) Payload {
	return Payload{
		ID:        ev.ID(),
		Type:      t,
		CreatedAt: ev.OccurredAt.UTC().Format(time.RFC3339Nano),
		Data: Data{
			View: payment.NewView(payment.Fields{
				ID:             ev.PaymentID,
				UID:            ev.PaymentUID,
				Status:         ev.Status,
				UserID:         ev.UserID,
				MerchantID:     ev.MerchantID,
				Amount:         ev.Amount,
				IdempotencyKey: p.IdempotencyKey,
				FailureReason:  ev.Reason,
				CreatedAt:      p.CreatedAt,
				UpdatedAt:      ev.OccurredAt,
			}),
			UserSeq: ev.UserSeq,
		},
	}
}

// Encode returns p as the request body.
func (p Payload) Encode() ([]byte, error) {
	b, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encode webhook %s: %w", p.ID, err)
	}
	return b, nil
}
