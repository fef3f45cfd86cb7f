package reconcile

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/finsvc/finance/pkg/ledger"
	"github.com/finsvc/finance/pkg/payment"
	"github.com/finsvc/finance/pkg/postgres"
	"github.com/finsvc/finance/pkg/verify"
)

// DefaultRecoverMerchant names the merchant of re-created payments when none
// is given: the processor's record does not say which merchant a payment
// was for, and "Pleo" is the top-up merchant financectl seed creates.
const DefaultRecoverMerchant = "Pleo"

// ErrRecoverRefused: Recover refused the whole run and changed nothing.
var ErrRecoverRefused = errors.New("recover refused, nothing changed")

// RecoverOptions says what Recover re-creates, and as whom.
type RecoverOptions struct {
	// Keys limits the run to these processor keys "payment-<uid>"; empty:
	// every execution without payment in the statement.
	Keys []string
	// Amount, when set, must be the processor's amount of the one key in
	// Keys: the operator's confirmation of what they expect.
	Amount *int64
	// MerchantID is the merchant of the re-created payments; 0 is the
	// merchant named DefaultRecoverMerchant.
	MerchantID int64
	// Actor is who recovers, e.g. "cli:<os user>": recoveries.actor and the
	// payment_transitions actor.
	Actor string
	// Apply commits the run; otherwise it is rolled back: a dry run makes
	// the same checks and the same plan, and keeps nothing.
	Apply bool
	// Emit, when set, is called inside the transaction with each
	// re-created payment's event, e.g. to write it to the outbox.
	Emit func(ctx context.Context, tx pgx.Tx, ev ledger.Event) error
}

// Recovered is one execution re-created as a payment.
type Recovered struct {
	LostExecution
	// PaymentID is the new payment's id (in a dry run, the id it had in
	// the rolled-back transaction: the real run hands out another).
	PaymentID int64 `json:"payment_id"`
	// BalanceBefore and BalanceAfter are the user's wallet balance around
	// the change.
	BalanceBefore int64 `json:"balance_before"`
	BalanceAfter  int64 `json:"balance_after"`
}

// RecoverReport is what a Recover run did, or would do.
type RecoverReport struct {
	At           time.Time `json:"at"`
	Applied      bool      `json:"applied"`
	Actor        string    `json:"actor"`
	MerchantID   int64     `json:"merchant_id"`
	MerchantName string    `json:"merchant_name"`
	// RestoreID is the latest restore recorded (financectl after-restore),
	// which the recoveries rows name; 0 when none was.
	RestoreID  int64       `json:"restore_id,omitempty"`
	Executions int64       `json:"executions"`
	Recovered  []Recovered `json:"recovered"`
}

// WriteText writes the report for a human.
func (r RecoverReport) WriteText(w io.Writer) error {
	var b strings.Builder
	mode := "applied"
	verb := "re-created"
	if !r.Applied {
		mode, verb = "dry run: nothing changed", "would re-create"
	}
	fmt.Fprintf(&b, "recover at %s (%s)\n", r.At.UTC().Format(time.RFC3339), mode)
	fmt.Fprintf(&b, "  statement: %d executions; as %s; merchant %d %q", r.Executions, r.Actor, r.MerchantID, r.MerchantName)
	if r.RestoreID != 0 {
		fmt.Fprintf(&b, "; restore %d", r.RestoreID)
	}
	fmt.Fprintf(&b, "\n")
	if len(r.Recovered) == 0 {
		fmt.Fprintf(&b, "  nothing to recover: every execution under a payment key has its payment here\n")
		_, err := io.WriteString(w, b.String())
		return err
	}
	fmt.Fprintf(&b, "  %s %d payments (succeeded, source recovered), each from the processor's execution:\n", verb, len(r.Recovered))
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "    key\tuser\tamount\texecuted at\tprocessor id\tpayment\tbalance\n")
	for _, x := range r.Recovered {
		id := fmt.Sprint(x.PaymentID)
		if !r.Applied {
			id = "(new)"
		}
		fmt.Fprintf(tw, "    %s\t%d\t%d\t%s\t%s\t%s\t%d → %d\n", x.Key, x.UserID, x.Amount, x.ExecutedAt.UTC().Format(time.RFC3339),
			x.Ref, id, x.BalanceBefore, x.BalanceAfter)
	}
	tw.Flush()
	_, err := io.WriteString(w, b.String())
	return err
}

// refusal collects why a run is refused.
type refusal []string

func (r *refusal) addf(format string, args ...any) { *r = append(*r, fmt.Sprintf(format, args...)) }

func (r refusal) err() error {
	if len(r) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrRecoverRefused, strings.Join(r, "; "))
}

// Recover re-creates, as payments, the executions of the processor's
// statement whose key "payment-<uid>" names a uid no payment here holds
// (what a restore from a backup loses), so that balances again match what
// the processor moved. Each becomes, in one transaction for the whole run:
// a payment with that uid, the execution's user and amount, the merchant of
// opts, source 'recovered', status succeeded (accepted, then moved by
// ledger.Apply: its settled entry, its balance change and its
// payment_transitions row, actor opts.Actor), and a recoveries row.
//
// The whole run is refused, changing nothing (ErrRecoverRefused, with every
// reason), when a key is already a payment here, the statement has no
// execution under a key, opts.Amount differs from the processor's amount, a
// key was executed more than once, the user has no wallet, the merchant
// does not exist, or a debit would overdraw its wallet.
func Recover(ctx context.Context, db *pgxpool.Pool, stmt verify.Statement, opts RecoverOptions) (RecoverReport, error) {
	rep := RecoverReport{Applied: opts.Apply, Actor: opts.Actor, Recovered: []Recovered{}}
	if stmt == nil {
		return rep, errors.New("recover needs the processor's statement of executions")
	}
	if opts.Actor == "" {
		return rep, errors.New("recover needs an actor")
	}
	var (
		why  refusal
		uids []uuid.UUID
	)
	for _, k := range opts.Keys {
		uid, ok := payment.ParseProcessorKey(k)
		if !ok {
			why.addf("%q is not a payment key (want payment-<uid>)", k)
			continue
		}
		uids = append(uids, uid)
	}
	if opts.Amount != nil && len(opts.Keys) != 1 {
		why.addf("an amount confirms exactly one key, got %d", len(opts.Keys))
	}
	if err := why.err(); err != nil {
		return rep, err
	}

	conn, err := db.Acquire(ctx)
	if err != nil {
		return rep, fmt.Errorf("acquire connection: %w", err)
	}
	defer conn.Release()
	defer conn.Exec(context.WithoutCancel(ctx), `DROP TABLE IF EXISTS `+verify.StatementTable) //nolint:errcheck // best effort
	loaded, err := verify.LoadStatement(ctx, conn.Conn(), stmt)
	if err != nil {
		return rep, err
	}
	rep.At, rep.Executions = loaded.At, loaded.Executions

	tx, err := conn.Begin(ctx)
	if err != nil {
		return rep, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // a dry run, or an error

	if err := recoverIn(ctx, tx, conn.Conn(), uids, opts, &rep); err != nil {
		return rep, err
	}
	if !opts.Apply {
		return rep, nil // rolled back
	}
	if err := tx.Commit(ctx); err != nil {
		return rep, fmt.Errorf("commit: %w", err)
	}
	return rep, nil
}

// recoverIn makes the run inside tx; conn holds the loaded statement.
func recoverIn(ctx context.Context, tx pgx.Tx, conn *pgx.Conn, uids []uuid.UUID, opts RecoverOptions, rep *RecoverReport) error {
	var why refusal

	// The merchant.
	if opts.MerchantID == 0 {
		err := tx.QueryRow(ctx, `SELECT id, name FROM merchants WHERE name = $1 ORDER BY id LIMIT 1`, DefaultRecoverMerchant).
			Scan(&rep.MerchantID, &rep.MerchantName)
		if errors.Is(err, pgx.ErrNoRows) {
			why.addf("no merchant is named %q: name the merchant of the re-created payments", DefaultRecoverMerchant)
		} else if err != nil {
			return fmt.Errorf("find merchant %q: %w", DefaultRecoverMerchant, err)
		}
	} else {
		rep.MerchantID = opts.MerchantID
		err := tx.QueryRow(ctx, `SELECT name FROM merchants WHERE id = $1`, opts.MerchantID).Scan(&rep.MerchantName)
		if errors.Is(err, pgx.ErrNoRows) {
			why.addf("merchant %d does not exist", opts.MerchantID)
		} else if err != nil {
			return fmt.Errorf("read merchant %d: %w", opts.MerchantID, err)
		}
	}
	if err := tx.QueryRow(ctx, `SELECT coalesce(max(id), 0) FROM restores`).Scan(&rep.RestoreID); err != nil {
		return fmt.Errorf("read last restore: %w", err)
	}

	// The keys asked for: each must be an execution without payment.
	for i, uid := range uids {
		key := opts.Keys[i]
		var id int64
		err := tx.QueryRow(ctx, `SELECT id FROM payments WHERE uid = $1`, uid).Scan(&id)
		if err == nil {
			why.addf("key %s is already payment %d, nothing to recover", key, id)
			continue
		} else if !errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("look up payment uid %s: %w", uid, err)
		}
		var n int64
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM `+verify.StatementTable+` WHERE payment_uid = $1`, uid).Scan(&n); err != nil {
			return fmt.Errorf("look up key %s in the statement: %w", key, err)
		}
		if n == 0 {
			why.addf("the processor's statement has no execution under key %s", key)
		}
	}

	var filter []uuid.UUID
	if len(opts.Keys) > 0 {
		filter = uids
	}
	lost, _, err := lostExecutions(ctx, conn, filter, math.MaxInt32)
	if err != nil {
		return err
	}
	seen := map[uuid.UUID]int{}
	for _, e := range lost {
		seen[e.PaymentUID]++
	}
	for _, e := range lost {
		if n := seen[e.PaymentUID]; n > 1 {
			why.addf("key %s was executed %d times by the processor (paid twice): recover it by hand", e.Key, n)
			seen[e.PaymentUID] = 0 // once
		}
		if opts.Amount != nil && *opts.Amount != e.Amount {
			why.addf("the processor executed key %s for amount %d, not %d", e.Key, e.Amount, *opts.Amount)
		}
		if err := payment.ValidateAmount(e.Amount); err != nil {
			why.addf("key %s: the processor's amount %d: %v", e.Key, e.Amount, err)
		}
	}
	missing, err := missingWallets(ctx, tx, lost)
	if err != nil {
		return err
	}
	for _, e := range missing {
		why.addf("user %d has no wallet here (key %s): the user must exist before their payment can be recovered", e.UserID, e.Key)
	}
	if err := why.err(); err != nil {
		return err
	}

	for _, e := range lost {
		r, err := recreate(ctx, tx, e, rep.MerchantID, rep.RestoreID, opts)
		if err != nil {
			return err
		}
		rep.Recovered = append(rep.Recovered, r)
	}
	return nil
}

// missingWallets returns the executions whose user has no wallet.
func missingWallets(ctx context.Context, tx pgx.Tx, lost []LostExecution) ([]LostExecution, error) {
	var out []LostExecution
	for _, e := range lost {
		var ok bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM wallets WHERE user_id = $1)`, e.UserID).Scan(&ok); err != nil {
			return nil, fmt.Errorf("look up wallet of user %d: %w", e.UserID, err)
		}
		if !ok {
			out = append(out, e)
		}
	}
	return out, nil
}

const insertRecoveredSQL = `
INSERT INTO payments (uid, user_id, merchant_id, amount, status, idempotency_key, request_hash, hold, source, created_at, updated_at)
VALUES ($1, $2, $3, $4, 'accepted', $5, $6, $7, 'recovered', $8, now())
RETURNING id`

const insertRecoverySQL = `
INSERT INTO recoveries (payment_id, processor_key, processor_ref, executed_at, actor, restore_id)
VALUES ($1, $2, $3, $4, $5, nullif($6, 0))`

// recreate writes one execution as a succeeded payment: accepted with its
// hold, then moved to succeeded by ledger.Apply.
func recreate(ctx context.Context, tx pgx.Tx, e LostExecution, merchantID, restoreID int64, opts RecoverOptions) (Recovered, error) {
	r := Recovered{LostExecution: e}
	if err := tx.QueryRow(ctx, `SELECT balance FROM wallets WHERE user_id = $1`, e.UserID).Scan(&r.BalanceBefore); err != nil {
		return r, fmt.Errorf("read wallet of user %d: %w", e.UserID, err)
	}
	hold := payment.HoldFor(e.Amount)
	// The client's own idempotency key went with the lost database: the
	// payment gets one that says where it came from.
	if err := tx.QueryRow(ctx, insertRecoveredSQL, e.PaymentUID, e.UserID, merchantID, e.Amount, "recovered:"+e.Key,
		payment.RequestHash(e.UserID, merchantID, e.Amount), hold, e.ExecutedAt).Scan(&r.PaymentID); err != nil {
		if postgres.IsUniqueViolation(err) { // a concurrent run got there first
			return r, fmt.Errorf("%w: key %s became a payment meanwhile (another recover?)", ErrRecoverRefused, e.Key)
		}
		return r, fmt.Errorf("insert payment for key %s: %w", e.Key, err)
	}
	if hold > 0 {
		_, err := tx.Exec(ctx, `UPDATE wallets SET held = held + $2 WHERE user_id = $1`, e.UserID, hold)
		if postgres.IsCheckViolation(err) {
			return r, fmt.Errorf("%w: key %s: user %d's available balance cannot take the processor's debit of %d "+
				"(the wallet would be overdrawn): settle it with the user by hand", ErrRecoverRefused, e.Key, e.UserID, -e.Amount)
		}
		if err != nil {
			return r, fmt.Errorf("hold %d on wallet of user %d: %w", hold, e.UserID, err)
		}
	}
	res, err := ledger.Apply(ctx, tx, ledger.Transition{
		PaymentID: r.PaymentID, PaymentUID: e.PaymentUID, UserID: e.UserID, To: payment.StatusSucceeded, Actor: opts.Actor,
		Reason: fmt.Sprintf("recovered: the processor executed %s as %s at %s for user %d amount %d; no payment here had that uid (lost in a database restore)",
			e.Key, e.Ref, e.ExecutedAt.UTC().Format(time.RFC3339), e.UserID, e.Amount),
	})
	if err != nil {
		return r, fmt.Errorf("settle recovered payment %d: %w", r.PaymentID, err)
	}
	if res.Change != ledger.Applied || res.Event == nil {
		return r, fmt.Errorf("settle recovered payment %d: %s, want applied", r.PaymentID, res.Change)
	}
	r.BalanceAfter = res.Event.Balance
	if opts.Emit != nil {
		if err := opts.Emit(ctx, tx, *res.Event); err != nil {
			return r, err
		}
	}
	if _, err := tx.Exec(ctx, insertRecoverySQL, r.PaymentID, e.Key, e.Ref, e.ExecutedAt, opts.Actor, restoreID); err != nil {
		return r, fmt.Errorf("audit recovery of key %s: %w", e.Key, err)
	}
	return r, nil
}
