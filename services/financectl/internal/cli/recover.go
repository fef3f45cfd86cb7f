package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"

	"github.com/finsvc/finance/pkg/payment"
	"github.com/finsvc/finance/pkg/reconcile"
)

// keyList is a repeatable --key flag.
type keyList []string

func (k *keyList) String() string { return strings.Join(*k, ",") }

func (k *keyList) Set(v string) error {
	if _, ok := payment.ParseProcessorKey(v); !ok {
		return fmt.Errorf("%q is not a payment key: want payment-<uid>", v)
	}
	*k = append(*k, v)
	return nil
}

// recoverCommandLine is the financectl recover command for these flags, for
// an operator to copy.
func recoverCommandLine(proc processorFlags, merchantID int64, keys []string, amount *int64, apply bool) string {
	args := []string{"financectl", "recover"}
	if apply {
		args = append(args, "--apply")
	}
	args = append(args, "--processor-url", shellQuote(proc.url))
	if proc.statementURL != "" {
		args = append(args, "--statement-url", shellQuote(proc.statementURL))
	}
	if merchantID != 0 {
		args = append(args, "--merchant-id", strconv.FormatInt(merchantID, 10))
	}
	for _, k := range keys {
		args = append(args, "--key", k)
	}
	if amount != nil {
		args = append(args, "--amount", strconv.FormatInt(*amount, 10))
	}
	return strings.Join(args, " ")
}

// shellQuote quotes s for a POSIX shell unless it needs none.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:@%+=,") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func recoverCommand() *command {
	var (
		proc       processorFlags
		apply      bool
		keys       keyList
		amount     *int64
		merchantID int64
		asJSON     bool
	)
	return &command{
		name: "recover",
		args: "[--apply] [--key payment-<uid> ...] [--amount A] [--merchant-id M] [--json]",
		summary: "re-create, as succeeded payments (source recovered), the processor's executions whose payment uid this " +
			"database does not hold (lost in a restore); a dry run unless --apply; one transaction, refused whole on any problem; " +
			"audited in recoveries",
		flags: func(*env) *flag.FlagSet {
			fs := newFlagSet("recover")
			proc.register(fs)
			fs.BoolVar(&apply, "apply", false, "re-create the payments; without it nothing is kept (a dry run)")
			fs.Var(&keys, "key", "only this processor key `payment-<uid>` (repeatable); default: every execution without payment")
			fs.Func("amount", "with one --key: the amount `A` (signed minor units) you expect; refused if the processor's differs",
				func(v string) error {
					a, err := strconv.ParseInt(v, 10, 64)
					if err != nil {
						return fmt.Errorf("not an integer amount: %q", v)
					}
					amount = &a
					return nil
				})
			fs.Int64Var(&merchantID, "merchant-id", 0,
				fmt.Sprintf("merchant `M` of the re-created payments (the processor's record names none); 0: the merchant named %q", reconcile.DefaultRecoverMerchant))
			fs.BoolVar(&asJSON, "json", false, "print the report as JSON")
			return fs
		},
		run: func(ctx context.Context, e *env, fs *flag.FlagSet) error {
			if err := noArgs(fs); err != nil {
				return err
			}
			if proc.noStatement {
				return usagef("recover reads the processor's statement of executions: --no-statement cannot be used")
			}
			if amount != nil && len(keys) != 1 {
				return usagef("--amount confirms exactly one --key")
			}
			if merchantID < 0 {
				return usagef("--merchant-id %d must be positive", merchantID)
			}
			pool, err := connect(ctx, e.cfg.Postgres)
			if err != nil {
				return err
			}
			defer pool.Close()
			// Each re-created payment is an admin_audit row in the run's
			// transaction; a dry run rolls them back with it. An applied run
			// that fails or is refused is recorded on its own.
			a := newAudit(e, "recover")
			rep, err := reconcile.Recover(ctx, pool, proc.statement(), reconcile.RecoverOptions{
				Keys: keys, Amount: amount, MerchantID: merchantID, Actor: e.cfg.Actor, Apply: apply, Emit: a.emit,
			})
			if err != nil && apply {
				target := "keys=" + keys.String()
				if len(keys) == 0 {
					target = "keys=all" // every execution without payment
				}
				err = a.failed(ctx, pool, target, err)
			}
			if errors.Is(err, reconcile.ErrRecoverRefused) {
				return err // exit 1, the reasons on one line
			}
			if err != nil {
				return fmt.Errorf("recover: %w", err)
			}
			if err := writeReport(e.stdout, asJSON, rep, rep.WriteText); err != nil {
				return err
			}
			if asJSON {
				return nil
			}
			switch {
			case len(rep.Recovered) == 0:
			case !apply:
				fmt.Fprintf(e.stdout, "\nnothing was changed. To re-create them:\n  %s\n",
					recoverCommandLine(proc, merchantID, keys, amount, true))
			default:
				fmt.Fprintf(e.stdout, "\nre-created %d payments. Check the ledger against the processor:\n  %s\n",
					len(rep.Recovered), verifyCommandLine(proc))
			}
			return nil
		},
	}
}
