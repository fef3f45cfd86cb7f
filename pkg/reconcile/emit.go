package reconcile

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/finsvc/finance/pkg/kafka"
	"github.com/finsvc/finance/pkg/ledger"
	"github.com/finsvc/finance/pkg/outbox"
	"github.com/finsvc/finance/pkg/wire"
)

// EmitToOutbox is the Config.Emit of every reconciler that runs against the
// pipeline (financectl reconcile, after-restore and recover, the gateway's
// console): it writes a resolution's PaymentEvent to the outbox in the
// resolution's transaction, exactly as the status consumer's events look
// (event id "<payment_id>:<status>"), so the relay publishes it to
// payments.events: no dual write.
func EmitToOutbox(ctx context.Context, tx pgx.Tx, ev ledger.Event) error {
	payload, err := wire.EncodeEvent(ev)
	if err != nil {
		return err
	}
	return outbox.Insert(ctx, tx, kafka.TopicEvents, kafka.UserKey(ev.UserID), payload)
}
