// Package wire is the one home of the Kafka record formats: for each message
// on a topic, one encoder and one decoder, shared by every producer and
// consumer (services, financectl, the load tests and benchmarks).
//
//	payments.requested  Requested  gateway (outbox) → dispatcher
//	payments.outcomes   Outcome    dispatcher → status consumer
//	payments.events     Event      status consumer, gateway, reconciler → push, webhooks
//
// The values are protobuf (proto/finance/v1). Callers never touch the
// generated types: a field added to the schema is mapped here, once.
package wire

import (
	"fmt"
	"time"

	"github.com/google/uuid"

	financev1 "github.com/finsvc/finance/proto/finance/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/finsvc/finance/pkg/ledger"
	"github.com/finsvc/finance/pkg/payment"
)

// Requested is a payment accepted by the gateway and waiting for the
// processor: a payments.requested record.
type Requested struct {
	PaymentID int64
	// PaymentUID is the uid's text as the record carries it, empty for a
	// record made before migration 00004; payment.ParseUID checks it.
	PaymentUID     string
	UserID         int64
	MerchantID     int64
	Amount         int64
	IdempotencyKey string
	CreatedAt      time.Time
}

// EncodeRequested returns r as a payments.requested record value.
func EncodeRequested(r Requested) ([]byte, error) {
	v, err := proto.Marshal(&financev1.PaymentRequested{
		PaymentId:      r.PaymentID,
		PaymentUid:     r.PaymentUID,
		UserId:         r.UserID,
		MerchantId:     r.MerchantID,
		Amount:         r.Amount,
		IdempotencyKey: r.IdempotencyKey,
		CreatedAt:      timestamp(r.CreatedAt),
	})
	if err != nil {
		return nil, fmt.Errorf("encode PaymentRequested %d: %w", r.PaymentID, err)
	}
	return v, nil
}

// DecodeRequested parses a payments.requested record value. It checks the
// encoding only; what the fields must hold is the consumer's to check.
func DecodeRequested(value []byte) (Requested, error) {
	var pb financev1.PaymentRequested
	if err := proto.Unmarshal(value, &pb); err != nil {
		return Requested{}, fmt.Errorf("decode finance.v1.PaymentRequested: %w", err)
	}
	return Requested{
		PaymentID:      pb.GetPaymentId(),
		PaymentUID:     pb.GetPaymentUid(),
		UserID:         pb.GetUserId(),
		MerchantID:     pb.GetMerchantId(),
		Amount:         pb.GetAmount(),
		IdempotencyKey: pb.GetIdempotencyKey(),
		CreatedAt:      asTime(pb.GetCreatedAt()),
	}, nil
}

// Outcome is what the dispatcher learned of a payment: a payments.outcomes
// record. Status is processing (sent, no answer yet), succeeded, failed or
// unknown.
type Outcome struct {
	PaymentID    int64
	PaymentUID   string // as in Requested
	UserID       int64
	Status       payment.Status
	Reason       string
	ProcessorRef string
	Attempts     int32
	DecidedAt    time.Time
}

// outcomeStatuses maps the payment statuses an outcome can carry to the
// wire's enum; the decoder uses it backwards.
var outcomeStatuses = map[payment.Status]financev1.OutcomeStatus{
	payment.StatusProcessing: financev1.OutcomeStatus_OUTCOME_STATUS_PROCESSING,
	payment.StatusSucceeded:  financev1.OutcomeStatus_OUTCOME_STATUS_SUCCEEDED,
	payment.StatusFailed:     financev1.OutcomeStatus_OUTCOME_STATUS_FAILED,
	payment.StatusUnknown:    financev1.OutcomeStatus_OUTCOME_STATUS_UNKNOWN,
}

// EncodeOutcome returns o as a payments.outcomes record value. A status no
// outcome can carry (accepted, or empty) is an error: it would decode as
// unspecified.
func EncodeOutcome(o Outcome) ([]byte, error) {
	st, ok := outcomeStatuses[o.Status]
	if !ok {
		return nil, fmt.Errorf("encode PaymentOutcome %d: status %q is not an outcome", o.PaymentID, o.Status)
	}
	v, err := proto.Marshal(&financev1.PaymentOutcome{
		PaymentId:    o.PaymentID,
		PaymentUid:   o.PaymentUID,
		UserId:       o.UserID,
		Status:       st,
		Reason:       o.Reason,
		ProcessorRef: o.ProcessorRef,
		Attempts:     o.Attempts,
		DecidedAt:    timestamp(o.DecidedAt),
	})
	if err != nil {
		return nil, fmt.Errorf("encode PaymentOutcome %d: %w", o.PaymentID, err)
	}
	return v, nil
}

// DecodeOutcome parses a payments.outcomes record value. A status this
// version does not know (unspecified, or added later) decodes as an empty
// Status, for the consumer to reject with the record in hand.
func DecodeOutcome(value []byte) (Outcome, error) {
	var pb financev1.PaymentOutcome
	if err := proto.Unmarshal(value, &pb); err != nil {
		return Outcome{}, fmt.Errorf("decode finance.v1.PaymentOutcome: %w", err)
	}
	var status payment.Status
	for s, w := range outcomeStatuses {
		if w == pb.GetStatus() {
			status = s
		}
	}
	return Outcome{
		PaymentID:    pb.GetPaymentId(),
		PaymentUID:   pb.GetPaymentUid(),
		UserID:       pb.GetUserId(),
		Status:       status,
		Reason:       pb.GetReason(),
		ProcessorRef: pb.GetProcessorRef(),
		Attempts:     pb.GetAttempts(),
		DecidedAt:    asTime(pb.GetDecidedAt()),
	}, nil
}

// EncodeEvent returns ev as a payments.events record value. Its event id is
// ev.ID(), so a change emitted twice (a redelivered outcome, the reconciler
// and the consumer both) is recognisable downstream.
func EncodeEvent(ev ledger.Event) ([]byte, error) {
	v, err := proto.Marshal(&financev1.PaymentEvent{
		EventId:    ev.ID(),
		PaymentId:  ev.PaymentID,
		PaymentUid: uidText(ev.PaymentUID),
		UserId:     ev.UserID,
		MerchantId: ev.MerchantID,
		Amount:     ev.Amount,
		Status:     string(ev.Status),
		Reason:     ev.Reason,
		Balance:    ev.Balance,
		Held:       ev.Held,
		UserSeq:    ev.UserSeq,
		OccurredAt: timestamp(ev.OccurredAt),
	})
	if err != nil {
		return nil, fmt.Errorf("encode PaymentEvent %s: %w", ev.ID(), err)
	}
	return v, nil
}

// DecodeEvent parses a payments.events record value. The event id is not
// returned: it is always ev.ID(). A uid that does not parse is an error.
func DecodeEvent(value []byte) (ledger.Event, error) {
	var pb financev1.PaymentEvent
	if err := proto.Unmarshal(value, &pb); err != nil {
		return ledger.Event{}, fmt.Errorf("decode finance.v1.PaymentEvent: %w", err)
	}
	ev := ledger.Event{
		PaymentID:  pb.GetPaymentId(),
		UserID:     pb.GetUserId(),
		MerchantID: pb.GetMerchantId(),
		Amount:     pb.GetAmount(),
		Status:     payment.Status(pb.GetStatus()),
		Reason:     pb.GetReason(),
		Balance:    pb.GetBalance(),
		Held:       pb.GetHeld(),
		UserSeq:    pb.GetUserSeq(),
		OccurredAt: asTime(pb.GetOccurredAt()),
	}
	if s := pb.GetPaymentUid(); s != "" {
		uid, err := payment.ParseUID(s)
		if err != nil {
			return ledger.Event{}, fmt.Errorf("decode finance.v1.PaymentEvent %s: %w", pb.GetEventId(), err)
		}
		ev.PaymentUID = uid
	}
	return ev, nil
}

// uidText leaves the nil uid (no uid known) empty on the wire, as the
// records made before migration 00004 are.
func uidText(uid uuid.UUID) string {
	if uid == uuid.Nil {
		return ""
	}
	return uid.String()
}

// timestamp leaves a zero time unset on the wire rather than encoding
// year 1.
func timestamp(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// asTime is timestamp's inverse: unset decodes as the zero time.
func asTime(ts *timestamppb.Timestamp) time.Time {
	if ts == nil {
		return time.Time{}
	}
	return ts.AsTime()
}
