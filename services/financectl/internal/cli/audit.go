package cli

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os/user"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/finsvc/finance/pkg/dlq"
	"github.com/finsvc/finance/pkg/ledger"
	"github.com/finsvc/finance/pkg/payment"
	"github.com/finsvc/finance/pkg/postgres"
	"github.com/finsvc/finance/pkg/reconcile"
	"github.com/finsvc/finance/pkg/webhook"
)

// The admin audit (docs/security.md, "Audit and secrets"): every change an
// operator makes with financectl is a row of admin_audit (migration 00013),
// as the gateway's admin routes write it: actor, action ("financectl
// webhooks rotate-secret"), target ("id=<uuid>") and status. A change's
// row is written in the change's own transaction, so there is a row exactly
// when the change committed, and no change without its row. A command that
// fails once it reached the database is rolled back and then recorded on
// its own, with the failure's status; one refused before (a usage error,
// exit 2), a read or a dry run writes nothing.

const insertAdminAuditSQL = `INSERT INTO admin_audit (actor, action, target, status) VALUES ($1, $2, $3, $4)`

// The statuses of financectl's rows are those the gateway's rows carry for
// the same outcome, so that one query reads both.
const (
	auditOK       = http.StatusOK
	auditNotFound = http.StatusNotFound            // no such endpoint or message
	auditRefused  = http.StatusConflict            // refused whole, nothing changed (recover)
	auditInvalid  = http.StatusUnprocessableEntity // an invalid endpoint, filter or topic
	auditFailed   = http.StatusInternalServerError
)

// errInvalid is a request the command refuses as the gateway answers 422.
var errInvalid = errors.New("invalid")

// auditStatus is the status a failed command is recorded with.
func auditStatus(err error) int {
	switch {
	case errors.Is(err, webhook.ErrNotFound):
		return auditNotFound
	case errors.Is(err, reconcile.ErrRecoverRefused):
		return auditRefused
	case errors.Is(err, errInvalid), errors.Is(err, dlq.ErrInvalidFilter), errors.Is(err, dlq.ErrUnknownTopic):
		return auditInvalid
	default:
		return auditFailed
	}
}

// osActor is the actor when FINANCE_ACTOR is unset: the operating-system user.
func osActor() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return "cli:" + u.Username
	}
	return "cli:unknown"
}

// audit writes the admin_audit rows of one command.
type audit struct {
	actor  string
	action string
}

// newAudit is the audit of command (e.g. "webhooks delete") run by e's actor.
func newAudit(e *env, command string) audit {
	return audit{actor: e.cfg.Actor, action: "financectl " + command}
}

// execer is a pool or a transaction.
type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// record appends one row, in q: the change's transaction for a change.
func (a audit) record(ctx context.Context, q execer, target string, status int) error {
	if _, err := q.Exec(ctx, insertAdminAuditSQL, a.actor, a.action, target, status); err != nil {
		return fmt.Errorf("audit %s %s in admin_audit: %w", a.action, target, err)
	}
	return nil
}

// change runs fn in one transaction with its row (status 200): both commit
// or neither does. fn may set *target (a created resource's id); when fn,
// the row or the commit fails, the failure is recorded on its own.
func (a audit) change(ctx context.Context, pool *pgxpool.Pool, target *string, fn func(tx pgx.Tx) error) error {
	err := postgres.InTx(ctx, pool, func(tx pgx.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		return a.record(ctx, tx, *target, auditOK)
	})
	if err != nil {
		return a.failed(ctx, pool, *target, err)
	}
	return nil
}

// failed records err, the command's failure on target, on its own, and
// returns it, joined with the audit's own error if the row could not be
// written either (the database is gone, or the role may not insert).
func (a audit) failed(ctx context.Context, pool *pgxpool.Pool, target string, err error) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if aerr := a.record(ctx, pool, target, auditStatus(err)); aerr != nil {
		return errors.Join(err, aerr)
	}
	return err
}

// emit is the Emit of a reconciliation pass or a recovery that financectl
// runs: the payment's event to the outbox (reconcile.EmitToOutbox) and the
// change's admin_audit row, both in the change's transaction.
func (a audit) emit(ctx context.Context, tx pgx.Tx, ev ledger.Event) error {
	if err := reconcile.EmitToOutbox(ctx, tx, ev); err != nil {
		return err
	}
	return a.record(ctx, tx, paymentTarget(ev.PaymentID, ev.Status), auditOK)
}

// resolveFailed records a pass's error when it is a resolution that could
// not be written (its payment is the target); other errors of a pass (the
// processor's statement unreadable, ...) changed nothing and are not admin
// actions. It returns err, joined with the audit's error if any.
func (a audit) resolveFailed(ctx context.Context, pool *pgxpool.Pool, err error) error {
	var re *reconcile.ResolveError
	if !errors.As(err, &re) {
		return err
	}
	return a.failed(ctx, pool, paymentTarget(re.PaymentID, re.To), err)
}

// paymentTarget is the target of a payment's change to status.
func paymentTarget(id int64, status payment.Status) string {
	return fmt.Sprintf("payment_id=%d to=%s", id, status)
}
