package cli

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/finsvc/finance/pkg/reconcile"
)

// verifyCommandLine is the financectl verify command for these flags.
func verifyCommandLine(proc processorFlags) string {
	args := []string{"financectl", "verify", "--processor-url", shellQuote(proc.url)}
	if proc.statementURL != "" {
		args = append(args, "--statement-url", shellQuote(proc.statementURL))
	}
	if proc.noStatement {
		args = append(args, "--no-statement")
	}
	return strings.Join(args, " ")
}

// insertRestoreSQL writes the restores row first, so that the restore is on
// record even if the pass after it fails.
const insertRestoreSQL = `
INSERT INTO restores (actor, schema_version_before, last_payment_id, last_payment_at)
SELECT $1, $2, coalesce(max(id), 0), (SELECT created_at FROM payments ORDER BY id DESC LIMIT 1)
FROM payments
RETURNING id, recorded_at, last_payment_id, last_payment_at`

const finishRestoreSQL = `
UPDATE restores
SET executions_without_payment = $2, resolved = $3, left_open = $4, finished_at = now()
WHERE id = $1`

func afterRestoreCommand() *command {
	var (
		rf     reconcileFlags
		asJSON bool
	)
	return &command{
		name: "after-restore",
		args: "[--processor-url U] [--api proposed|as-is] [reconcile flags]",
		summary: "the one command after DATABASE_URL was restored from a backup: migrate up, record the restore (restores), " +
			"run one reconciliation pass, list the processor's executions the restore lost and print the financectl recover commands to run next",
		flags: func(*env) *flag.FlagSet {
			fs := newFlagSet("after-restore")
			rf.register(fs)
			fs.BoolVar(&asJSON, "json", false, "print the pass's report as JSON")
			return fs
		},
		run: func(ctx context.Context, e *env, fs *flag.FlagSet) error {
			if err := noArgs(fs); err != nil {
				return err
			}
			lookup, err := rf.validate()
			if err != nil {
				return err
			}
			pool, err := connect(ctx, e.cfg.Postgres)
			if err != nil {
				return err
			}
			defer pool.Close()
			return afterRestore(ctx, e, pool, rf, lookup, asJSON)
		},
	}
}

func afterRestore(ctx context.Context, e *env, pool *pgxpool.Pool, rf reconcileFlags, lookup reconcile.Lookup, asJSON bool) error {
	w := e.stdout
	if asJSON {
		w = e.stderr // stdout carries the report alone
	}
	// 1. The schema: a backup may predate the latest migrations.
	before, err := migrateUp(ctx, pool, w, "1. ")
	if err != nil {
		return err
	}

	// 2. The restore, on record before anything else changes.
	var (
		id         int64
		recordedAt time.Time
		lastID     int64
		lastAt     *time.Time
	)
	if err := pool.QueryRow(ctx, insertRestoreSQL, e.cfg.Actor, before).Scan(&id, &recordedAt, &lastID, &lastAt); err != nil {
		return fmt.Errorf("record the restore: %w", err)
	}
	fmt.Fprintf(w, "2. restore recorded: restores row %d, by %s at %s\n", id, e.cfg.Actor, recordedAt.UTC().Format(time.RFC3339))
	if lastAt != nil {
		fmt.Fprintf(w, "   the newest payment here is %d, accepted %s: unless the gateway took payments since the restore,\n"+
			"   the backup's point in time; payments accepted after it are gone from this database\n",
			lastID, lastAt.UTC().Format(time.RFC3339))
	} else {
		fmt.Fprintf(w, "   the database holds no payment\n")
	}

	// 3. One normal pass: unknown and stuck payments that the processor
	// settled are resolved; those it never saw are left, since their
	// requests may still be in Kafka.
	cfg := rf.cfg
	a := newAudit(e, "after-restore")
	cfg.Emit = a.emit // each resolution's event and admin_audit row
	rep, err := reconcile.New(pool, rf.proc.statement(), lookup, cfg).Run(ctx)
	if err != nil {
		err = a.resolveFailed(ctx, pool, err)
		return fmt.Errorf("reconcile: %w (the restore is recorded as restores row %d; run after-restore again)", err, id)
	}
	if _, err := pool.Exec(ctx, finishRestoreSQL, id, rep.WithoutPaymentCount, rep.Succeeded+rep.Failed, rep.Left); err != nil {
		return fmt.Errorf("record what the pass found in restores row %d: %w", id, err)
	}
	fmt.Fprintf(w, "3. reconciliation pass:\n")
	if err := writeReport(e.stdout, asJSON, rep, rep.WriteText); err != nil {
		return err
	}

	// 4. What to do next.
	fmt.Fprintf(w, "\n4. next:\n")
	switch {
	case !rep.Statement:
		fmt.Fprintf(w, "   no statement was read: the processor's executions this database lost cannot be listed, nor recovered.\n"+
			"   Get the processor's executions since %s and rerun with --statement-url.\n", lastAtText(lastAt))
	case rep.WithoutPaymentCount == 0:
		fmt.Fprintf(w, "   nothing to recover: every execution under a payment key has its payment here.\n")
	default:
		fmt.Fprintf(w, "   %d executions of the processor have no payment here (listed above): money it moved that this database lost.\n"+
			"   Review what recover would do (a dry run, changes nothing):\n     %s\n"+
			"   then re-create them as succeeded payments:\n     %s\n",
			rep.WithoutPaymentCount, recoverCommandLine(rf.proc, 0, nil, nil, false), recoverCommandLine(rf.proc, 0, nil, nil, true))
	}
	if rep.Left > 0 {
		fmt.Fprintf(w, "   %d unknown or stuck payments were left (listed above, with why); the reconciler (reconcile --watch) keeps at them,\n"+
			"   and verify's stuck_nonfinal names any still open past its bound.\n", rep.Left)
	}
	fmt.Fprintf(w, "   Finally check the ledger, alone and against the processor:\n     %s\n", verifyCommandLine(rf.proc))
	return nil
}

func lastAtText(t *time.Time) string {
	if t == nil {
		return "the backup"
	}
	return t.UTC().Format(time.RFC3339)
}
