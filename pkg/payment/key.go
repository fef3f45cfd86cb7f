package payment

import (
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
)

// KeyRetention is how long the processor keeps an idempotency key after it
// settled the payment: the proposed API's promise (docs/correctness.md).
// Past it, a call under the same key may execute again, so nothing that
// may already have been sent is sent again once a payment is older (the
// dispatch guard, DLQ replays), and a lookup 404 proves nothing (the
// reconciler).
const KeyRetention = 24 * time.Hour

// keyPrefix starts a payment's processor idempotency key.
const keyPrefix = "payment-"

// NewUID returns a new payment uid: a UUIDv7, time-ordered and with 74
// random bits, so it never repeats, not even after the database is restored
// from a backup (which rolls the payments.id sequence back), and cannot be
// guessed from another payment's.
func NewUID() uuid.UUID {
	return uuid.Must(uuid.NewV7())
}

// ProcessorKey is the idempotency key the dispatcher sends the processor for
// the payment with this uid: "payment-<uid>". It is the one place that makes
// it; ParseProcessorKey reads it back.
func ProcessorKey(uid uuid.UUID) string {
	return keyPrefix + uid.String()
}

// ParseProcessorKey returns the payment uid a processor key names, and false
// for a key that ProcessorKey did not make: another client's, the numeric
// "payment-<id>" keys of releases before migration 00004, the nil uid, or
// any other spelling of a uid (upper case, braces, urn:uuid:). It is the one
// place that reads a processor key: a key names a payment exactly when
// ProcessorKey(uid) gives it back.
func ParseProcessorKey(key string) (uuid.UUID, bool) {
	rest, ok := strings.CutPrefix(key, keyPrefix)
	if !ok {
		return uuid.UUID{}, false
	}
	uid, err := ParseUID(rest)
	if err != nil || ProcessorKey(uid) != key {
		return uuid.UUID{}, false
	}
	return uid, true
}

// ParseUID parses a payment uid in its canonical text form
// (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx), refusing the nil uid.
func ParseUID(s string) (uuid.UUID, error) {
	if len(s) != 36 {
		return uuid.UUID{}, fmt.Errorf("payment uid %q: want the 36-character form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", s)
	}
	uid, err := uuid.Parse(s)
	if err != nil {
		return uuid.UUID{}, fmt.Errorf("payment uid %q: %w", s, err)
	}
	if uid == uuid.Nil {
		return uuid.UUID{}, fmt.Errorf("payment uid %q: the nil uid names no payment", s)
	}
	return uid, nil
}
