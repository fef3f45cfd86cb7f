package httpapi

import (
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/finsvc/finance/pkg/payment"
	"github.com/finsvc/finance/services/gateway/internal/store"
)

// paymentRequest is the body of POST /v1/payments and POST /payment. Pointers
// tell a missing field from a zero one.
type paymentRequest struct {
	UserID     *int64 `json:"user_id"`
	MerchantID *int64 `json:"merchant_id"`
	Amount     *int64 `json:"amount"`
}

const paymentFields = "user_id, merchant_id and amount"

func (r paymentRequest) validate() (store.NewPayment, error) {
	var missing []string
	if r.UserID == nil {
		missing = append(missing, "user_id")
	}
	if r.MerchantID == nil {
		missing = append(missing, "merchant_id")
	}
	if r.Amount == nil {
		missing = append(missing, "amount")
	}
	if len(missing) > 0 {
		return store.NewPayment{}, invalid("missing required field(s): " + strings.Join(missing, ", "))
	}
	var problems []string
	if *r.UserID <= 0 {
		problems = append(problems, "user_id must be a positive integer")
	}
	if *r.MerchantID <= 0 {
		problems = append(problems, "merchant_id must be a positive integer")
	}
	if err := payment.ValidateAmount(*r.Amount); err != nil {
		problems = append(problems, err.Error()+" (signed minor units: negative pays a merchant, positive adds funds)")
	}
	if len(problems) > 0 {
		return store.NewPayment{}, invalid(strings.Join(problems, "; "))
	}
	return store.NewPayment{UserID: *r.UserID, MerchantID: *r.MerchantID, Amount: *r.Amount}, nil
}

// readPaymentRequest decodes a payment request: its Idempotency-Key
// (generated when absent and !keyRequired) and its body. Every refusal is an
// *apiError of status 4xx (FuzzPaymentRequest).
func readPaymentRequest(c *gin.Context, keyRequired bool) (store.NewPayment, error) {
	key, hasKey, err := idempotencyKey(c)
	if err != nil {
		return store.NewPayment{}, err
	}
	if !hasKey {
		if keyRequired {
			return store.NewPayment{}, invalid(fmt.Sprintf("the Idempotency-Key header is required: 1 to %d printable ASCII characters, "+
				"unique per payment and reused when retrying it", maxIdempotencyKeyLen))
		}
		key = "legacy-" + randomHex(16)
	}
	// Every answer names the payment's key, so a client that got an
	// ambiguous answer (a timeout, a 503) retries with it and never makes
	// a second payment; the as-is route's old clients sent none.
	c.Header("Idempotency-Key", key)
	var req paymentRequest
	if err := decodeJSON(c, &req, paymentFields); err != nil {
		return store.NewPayment{}, err
	}
	np, err := req.validate()
	if err != nil {
		return store.NewPayment{}, err
	}
	np.IdempotencyKey = key
	return np, nil
}

// paymentJSON is a payment as the API shows it; webhooks carry the same
// encoding (payment.View).
type paymentJSON = payment.View

// paymentURL is the payment's status URL.
func paymentURL(uid uuid.UUID) string {
	return payment.StatusURL(uid)
}

func toPaymentJSON(p store.Payment) paymentJSON {
	return payment.NewView(payment.Fields{
		ID:             p.ID,
		UID:            p.UID,
		Status:         p.Status,
		UserID:         p.UserID,
		MerchantID:     p.MerchantID,
		Amount:         p.Amount,
		IdempotencyKey: p.IdempotencyKey,
		FailureReason:  p.FailureReason,
		CreatedAt:      p.CreatedAt,
		UpdatedAt:      p.UpdatedAt,
	})
}

// createPayment is POST /v1/payments: Idempotency-Key is required.
func (a *api) createPayment(c *gin.Context) error {
	return a.acceptPayment(c, "v1", true)
}

// createLegacyPayment is the as-is POST /payment. Its clients never sent an
// Idempotency-Key, so one is generated when absent: such requests are
// accepted once per call and a retry makes a second payment.
func (a *api) createLegacyPayment(c *gin.Context) error {
	return a.acceptPayment(c, "legacy", false)
}

func (a *api) acceptPayment(c *gin.Context, apiName string, keyRequired bool) error {
	np, err := readPaymentRequest(c, keyRequired)
	if err != nil {
		return err
	}
	if p, _ := principal(c); !p.CanActFor(np.UserID) {
		return forbidden(fmt.Sprintf("this token may only pay as user %d", p.UserID))
	}

	got, created, err := a.store.AcceptPayment(c.Request.Context(), np)
	if err != nil {
		return err
	}
	c.Header("Location", paymentURL(got.UID))
	status := http.StatusAccepted
	if created {
		a.metrics.accepted.WithLabelValues(apiName).Inc()
		// On the request's own log line (observe), not a second one.
		c.Set(keyPaymentLog, []slog.Attr{slog.Bool("payment_accepted", true), slog.Int64("payment_id", got.ID),
			slog.String("payment_uid", got.UID.String()), slog.Int64("user_id", got.UserID),
			slog.Int64("merchant_id", got.MerchantID), slog.Int64("amount", got.Amount), slog.String("api", apiName)})
	} else {
		// A replay answers the payment as it is now: 202 while it is still
		// on its way, 200 once its outcome is final.
		a.metrics.replayed.WithLabelValues(apiName).Inc()
		c.Header("Idempotent-Replayed", "true")
		if got.Status.Final() {
			status = http.StatusOK
		}
	}
	writeJSON(c, status, toPaymentJSON(got))
	return nil
}

// getPayment is GET /v1/payments/{id}, where id is the payment's uid or its
// numeric id. Another user's payment answers 404, as if it did not exist, so
// ids cannot be probed.
func (a *api) getPayment(c *gin.Context) error {
	var (
		p   store.Payment
		err error
	)
	if param := c.Param("id"); strings.Contains(param, "-") {
		uid, perr := payment.ParseUID(param)
		if perr != nil {
			return invalid("payment id: " + perr.Error() + ", or a positive integer")
		}
		p, err = a.store.PaymentByUID(c.Request.Context(), uid)
	} else {
		id, perr := parseID(param, "payment id")
		if perr != nil {
			return perr
		}
		p, err = a.store.PaymentByID(c.Request.Context(), id)
	}
	if err != nil {
		return err
	}
	if pr, _ := principal(c); !pr.CanActFor(p.UserID) {
		return fmt.Errorf("payment %d of another user: %w", p.ID, store.ErrPaymentNotFound)
	}
	if notModified(c, paymentETag(p)) { // etag.go; after the owner check
		return nil
	}
	writeJSON(c, http.StatusOK, toPaymentJSON(p))
	return nil
}
