package httpapi

import (
	"context"
	"errors"
	"net/http"

	"github.com/finsvc/finance/pkg/dlq"
	"github.com/finsvc/finance/pkg/problem"
	"github.com/finsvc/finance/services/gateway/internal/store"
)

// The problem types this API answers with; README.md lists them for clients.
const (
	typeInvalidRequest       = "invalid-request"
	typeUnauthorized         = "unauthorized"
	typeForbidden            = "forbidden"
	typeNotFound             = "not-found"
	typeMethodNotAllowed     = "method-not-allowed"
	typePayloadTooLarge      = "payload-too-large"
	typeUnsupportedMediaType = "unsupported-media-type"
	typeIdempotencyKeyReuse  = "idempotency-key-reuse"
	typeInsufficientFunds    = "insufficient-funds"
	typeUnknownUser          = "unknown-user"
	typeUnknownMerchant      = "unknown-merchant"
	typeTimeout              = "timeout"
	typeInternal             = "internal"
	typeDLQDisabled          = "dlq-admin-disabled"
)

// apiError is an error that already knows the problem it answers with: bad
// input found by a handler, a failed authentication, a missing route.
type apiError struct {
	status int
	typ    string
	title  string
	detail string
}

func (e *apiError) Error() string { return e.typ + ": " + e.detail }

func invalid(detail string) error {
	return &apiError{http.StatusBadRequest, typeInvalidRequest, "Invalid request", detail}
}

func unauthorized(detail string) error {
	return &apiError{http.StatusUnauthorized, typeUnauthorized, "Unauthorized", detail}
}

func forbidden(detail string) error {
	return &apiError{http.StatusForbidden, typeForbidden, "Forbidden", detail}
}

func notFound(detail string) error {
	return &apiError{http.StatusNotFound, typeNotFound, "Not found", detail}
}

// problemFor is the one place that maps errors to HTTP problems. Errors it
// does not recognise are server faults: 500, with no internals in the body.
func problemFor(err error) problem.Details {
	var ae *apiError
	switch {
	case errors.As(err, &ae):
		return problem.New(ae.status, ae.typ, ae.title, ae.detail)
	case errors.Is(err, store.ErrWalletNotFound):
		return problem.New(http.StatusNotFound, typeNotFound, "Not found", "no wallet exists for this user")
	case errors.Is(err, store.ErrPaymentNotFound):
		return problem.New(http.StatusNotFound, typeNotFound, "Not found", "no such payment")
	case errors.Is(err, store.ErrUnknownUser):
		return problem.New(http.StatusUnprocessableEntity, typeUnknownUser, "Unknown user",
			"user_id does not name a user with a wallet")
	case errors.Is(err, store.ErrUnknownMerchant):
		return problem.New(http.StatusUnprocessableEntity, typeUnknownMerchant, "Unknown merchant",
			"merchant_id does not name a known merchant")
	case errors.Is(err, store.ErrInsufficientFunds):
		return problem.New(http.StatusUnprocessableEntity, typeInsufficientFunds, "Insufficient funds",
			"the available balance (balance minus held) does not cover this payment; nothing was recorded")
	case errors.Is(err, dlq.ErrNotFound):
		return problem.New(http.StatusNotFound, typeNotFound, "Not found", "no dead letter at this topic, partition and offset")
	case errors.Is(err, dlq.ErrUnknownTopic), errors.Is(err, dlq.ErrInvalidFilter):
		return problem.New(http.StatusBadRequest, typeInvalidRequest, "Invalid request", err.Error())
	case errors.Is(err, store.ErrIdempotencyKeyReuse):
		return problem.New(http.StatusUnprocessableEntity, typeIdempotencyKeyReuse, "Idempotency key reused",
			"this Idempotency-Key was already used for a different request; use a new key for a new payment")
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		// Canceled: the client went away; nobody reads this answer.
		return problem.New(http.StatusServiceUnavailable, typeTimeout, "Timeout",
			"the request did not finish in time; retry with the same Idempotency-Key")
	default:
		return problem.New(http.StatusInternalServerError, typeInternal, "Internal error",
			"the request failed on our side; retry with the same Idempotency-Key")
	}
}
