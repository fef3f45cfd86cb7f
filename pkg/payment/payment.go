// Package payment holds the payment types shared by every service: statuses,
// the one transition function, amount limits and request validation.
package payment

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
)

// Status is a payment's lifecycle state.
type Status string

// The payment states. A payment moves accepted → processing → succeeded | failed;
// unknown means the outcome could not be learned yet and is resolved later to
// succeeded or failed, never guessed.
const (
	StatusAccepted   Status = "accepted"
	StatusProcessing Status = "processing"
	StatusSucceeded  Status = "succeeded"
	StatusFailed     Status = "failed"
	StatusUnknown    Status = "unknown"
)

// MaxAbsAmount is the largest absolute amount, in minor units, a payment may carry.
const MaxAbsAmount int64 = 1_000_000_000_000

// Sentinel errors of the payment contract.
var (
	ErrInvalidTransition = errors.New("invalid status transition")
	ErrInvalidAmount     = errors.New("invalid amount")
)

// rank orders states so that they only move forward. succeeded and failed
// share the final rank: neither may follow the other.
var rank = map[Status]int{
	StatusAccepted:   0,
	StatusProcessing: 1,
	StatusUnknown:    2,
	StatusSucceeded:  3,
	StatusFailed:     3,
}

// Valid reports whether s is a known status.
func (s Status) Valid() bool {
	_, ok := rank[s]
	return ok
}

// Final reports whether s is a terminal status.
func (s Status) Final() bool {
	return s == StatusSucceeded || s == StatusFailed
}

// Transition decides whether a payment in status from may move to status to.
// It returns changed=false with a nil error when to equals from, so a
// redelivered outcome is a no-op; it returns ErrInvalidTransition when the
// move would go backwards or change a final status.
func Transition(from, to Status) (changed bool, err error) {
	if !from.Valid() || !to.Valid() {
		return false, fmt.Errorf("%w: %q → %q: unknown status", ErrInvalidTransition, from, to)
	}
	if from == to {
		return false, nil
	}
	if from.Final() || rank[to] <= rank[from] {
		return false, fmt.Errorf("%w: %s → %s", ErrInvalidTransition, from, to)
	}
	return true, nil
}

// ValidateAmount checks that amount is a non-zero value within ±MaxAbsAmount.
func ValidateAmount(amount int64) error {
	if amount == 0 {
		return fmt.Errorf("%w: amount must not be 0", ErrInvalidAmount)
	}
	if amount > MaxAbsAmount || amount < -MaxAbsAmount {
		return fmt.Errorf("%w: amount must be within ±%d minor units", ErrInvalidAmount, MaxAbsAmount)
	}
	return nil
}

// HoldFor returns the amount a payment reserves from the available balance
// when accepted: the absolute value of a debit, nothing for a credit.
func HoldFor(amount int64) int64 {
	if amount < 0 {
		return -amount
	}
	return 0
}

// RequestHash fingerprints a payment request so that a reused idempotency key
// with a different body can be told apart from a retry of the same request.
func RequestHash(userID, merchantID, amount int64) string {
	h := sha256.New()
	for _, v := range []int64{userID, merchantID, amount} {
		h.Write(strconv.AppendInt(nil, v, 10))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}
