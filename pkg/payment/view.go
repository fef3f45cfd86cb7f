package payment

import (
	"time"

	"github.com/google/uuid"
)

// View is a payment as the API shows it: the body of GET /v1/payments/{id}
// and the data of a webhook. Both encode it from here, so a field added to
// one shows in the other.
type View struct {
	ID int64 `json:"id"`
	// UID is the payment's globally unique id (a UUIDv7): it never repeats,
	// not even after a database restore, where numeric ids can. The status
	// URL names it.
	UID            string `json:"uid"`
	Status         Status `json:"status"`
	UserID         int64  `json:"user_id"`
	MerchantID     int64  `json:"merchant_id"`
	Amount         int64  `json:"amount"`
	IdempotencyKey string `json:"idempotency_key"`
	FailureReason  string `json:"failure_reason,omitempty"`
	// CreatedAt and UpdatedAt are RFC 3339 to the microsecond: a client
	// (and the load test's answer→visible figure) can tell when the final
	// status was written.
	CreatedAt string `json:"created_at"`
	UpdatedAt string `json:"updated_at"`
	StatusURL string `json:"status_url"`
}

// Fields are what a View is made of.
type Fields struct {
	ID             int64
	UID            uuid.UUID
	Status         Status
	UserID         int64
	MerchantID     int64
	Amount         int64
	IdempotencyKey string
	FailureReason  string
	CreatedAt      time.Time
	UpdatedAt      time.Time
}

// NewView returns f as the API shows it. The failure reason shows only on a
// failed payment.
func NewView(f Fields) View {
	v := View{
		ID:             f.ID,
		UID:            f.UID.String(),
		Status:         f.Status,
		UserID:         f.UserID,
		MerchantID:     f.MerchantID,
		Amount:         f.Amount,
		IdempotencyKey: f.IdempotencyKey,
		CreatedAt:      f.CreatedAt.UTC().Format(time.RFC3339Nano),
		UpdatedAt:      f.UpdatedAt.UTC().Format(time.RFC3339Nano),
		StatusURL:      StatusURL(f.UID),
	}
	if f.Status == StatusFailed {
		v.FailureReason = f.FailureReason
	}
	return v
}

// StatusURL is a payment's status URL. It names the uid, which never
// repeats; GET /v1/payments/{id} takes the numeric id too.
func StatusURL(uid uuid.UUID) string {
	return "/v1/payments/" + uid.String()
}
