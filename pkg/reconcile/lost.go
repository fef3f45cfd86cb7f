package reconcile

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/finsvc/finance/pkg/verify"
)

// LostExecution is an execution of the processor under a key
// "payment-<uid>" whose uid no payment here holds: money the processor
// moved for a payment this database does not know, typically one accepted
// after the backup it was restored from (verify's execution_without_payment).
type LostExecution struct {
	// Key is the idempotency key, "payment-<uid>"; PaymentUID its uid.
	Key        string    `json:"key"`
	PaymentUID uuid.UUID `json:"payment_uid"`
	// Ref is the processor's id of the execution.
	Ref        string    `json:"ref"`
	UserID     int64     `json:"user_id"`
	Amount     int64     `json:"amount"`
	ExecutedAt time.Time `json:"executed_at"`
	// Reference is what the dispatcher sent as reference: the payment's id
	// in the database that accepted it. Informational only: ids repeat after
	// a restore.
	Reference string `json:"reference,omitempty"`
}

// lostExecutionsSQL lists the loaded statement's keyed executions whose uid
// no payment holds, limited to the uids $1 unless it is NULL.
const lostExecutionsSQL = `
SELECT x.idempotency_key, x.payment_uid, x.ref, x.user_id, x.amount, x.executed_at, x.reference, count(*) OVER ()
FROM ` + verify.StatementTable + ` x
WHERE x.payment_uid IS NOT NULL AND ($1::uuid[] IS NULL OR x.payment_uid = ANY ($1::uuid[]))
  AND NOT EXISTS (SELECT 1 FROM payments p WHERE p.uid = x.payment_uid)
ORDER BY x.seq
LIMIT $2`

// lostExecutions returns up to limit executions without a payment from the
// statement loaded on conn, in execution order, and how many there are in
// all. uids, when not nil, limits them to those payment uids.
func lostExecutions(ctx context.Context, conn *pgx.Conn, uids []uuid.UUID, limit int) ([]LostExecution, int64, error) {
	rows, err := conn.Query(ctx, lostExecutionsSQL, uids, limit)
	if err != nil {
		return nil, 0, fmt.Errorf("list executions without payment: %w", err)
	}
	out := []LostExecution{}
	var (
		e     LostExecution
		total int64
	)
	if _, err := pgx.ForEachRow(rows, []any{&e.Key, &e.PaymentUID, &e.Ref, &e.UserID, &e.Amount, &e.ExecutedAt, &e.Reference, &total},
		func() error {
			e.ExecutedAt = e.ExecutedAt.UTC()
			out = append(out, e)
			return nil
		}); err != nil {
		return nil, 0, fmt.Errorf("list executions without payment: %w", err)
	}
	return out, total, nil
}

// WriteLostExecutions writes one line per execution: key, user, amount,
// when executed, the processor's id and the dispatcher's reference.
func WriteLostExecutions(w io.Writer, es []LostExecution) {
	if len(es) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "    key\tuser\tamount\texecuted at\tprocessor id\treference\n")
	for _, e := range es {
		fmt.Fprintf(tw, "    %s\t%d\t%d\t%s\t%s\t%s\n", e.Key, e.UserID, e.Amount, e.ExecutedAt.UTC().Format(time.RFC3339), e.Ref, e.Reference)
	}
	tw.Flush()
}
