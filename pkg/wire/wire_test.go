package wire_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/finsvc/finance/pkg/ledger"
	"github.com/finsvc/finance/pkg/payment"
	"github.com/finsvc/finance/pkg/wire"
)

func TestRoundTrips(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 5, 11, 0, 0, 123456789, time.UTC)
	uid := uuid.MustParse("01900000-0000-7000-8000-000000000001")

	t.Run("requested", func(t *testing.T) {
		t.Parallel()
		want := wire.Requested{PaymentID: 1, PaymentUID: uid.String(), UserID: 2, MerchantID: 3, Amount: 4, IdempotencyKey: "k", CreatedAt: at}
		v, err := wire.EncodeRequested(want)
		if err != nil {
			t.Fatal(err)
		}
		got, err := wire.DecodeRequested(v)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("(-want +got)\n%s", diff)
		}
	})
	t.Run("outcome", func(t *testing.T) {
		t.Parallel()
		for _, st := range []payment.Status{payment.StatusProcessing, payment.StatusSucceeded, payment.StatusFailed, payment.StatusUnknown} {
			want := wire.Outcome{PaymentID: 1, PaymentUID: uid.String(), UserID: 2, Status: st, Reason: "r", ProcessorRef: "p", Attempts: 2, DecidedAt: at}
			v, err := wire.EncodeOutcome(want)
			if err != nil {
				t.Fatal(err)
			}
			got, err := wire.DecodeOutcome(v)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("%s (-want +got)\n%s", st, diff)
			}
		}
	})
	t.Run("event", func(t *testing.T) {
		t.Parallel()
		want := ledger.Event{PaymentID: 1, PaymentUID: uid, UserID: 2, MerchantID: 3, Amount: 4, Status: payment.StatusSucceeded,
			Reason: "r", Balance: 5, Held: 6, UserSeq: 7, OccurredAt: at}
		v, err := wire.EncodeEvent(want)
		if err != nil {
			t.Fatal(err)
		}
		got, err := wire.DecodeEvent(v)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("(-want +got)\n%s", diff)
		}
	})
}

func TestBadValues(t *testing.T) {
	t.Parallel()
	garbage := []byte{0xff, 0xff, 0xff}
	if _, err := wire.DecodeRequested(garbage); err == nil {
		t.Error("DecodeRequested(garbage): no error")
	}
	if _, err := wire.DecodeOutcome(garbage); err == nil {
		t.Error("DecodeOutcome(garbage): no error")
	}
	if _, err := wire.DecodeEvent(garbage); err == nil {
		t.Error("DecodeEvent(garbage): no error")
	}
	if _, err := wire.EncodeOutcome(wire.Outcome{PaymentID: 1, Status: payment.StatusAccepted}); err == nil {
		t.Error("EncodeOutcome(accepted): no error")
	}
	// A status this version does not know decodes as empty, for the
	// consumer to reject with the record in hand.
	v, err := wire.EncodeOutcome(wire.Outcome{PaymentID: 1, Status: payment.StatusFailed})
	if err != nil {
		t.Fatal(err)
	}
	v[len(v)-1] = 9 // field 3 (status) is the last one written: an enum value from the future
	got, err := wire.DecodeOutcome(v)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != "" {
		t.Errorf("future status decoded as %q, want empty", got.Status)
	}
	// An event without a uid round-trips as the nil uid; a malformed one is
	// an error, never a zero uid.
	ev, err := wire.EncodeEvent(ledger.Event{PaymentID: 1, Status: payment.StatusFailed})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := wire.DecodeEvent(ev); err != nil || got.PaymentUID != uuid.Nil {
		t.Errorf("event without uid: %v, %v", got.PaymentUID, err)
	}
	bad := append(ev, 0x62, 3, 'x', 'y', 'z') // field 12 (payment_uid) = "xyz"
	if _, err := wire.DecodeEvent(bad); err == nil {
		t.Error("event with uid \"xyz\": no error")
	}
}
