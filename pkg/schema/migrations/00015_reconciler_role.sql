-- +goose Up

-- Least privilege for the reconciler (issue 16, point 6): financectl
-- reconcile (--watch, the periodic job) and the operator console's
-- "resolve from processor" (the gateway's GATEWAY_RECONCILE_DATABASE_URL)
-- settle payments from the processor's record. Until now they ran as the
-- schema's owner, so the internet-facing gateway held credentials that may
-- do anything, wallets.balance and DROP TABLE included. They run as
-- finance_reconciler instead, created as 00012 creates the services'
-- roles: LOGIN without a password (an operator sets one in production),
-- only when missing, a concurrent creation by another database's migration
-- not being an error.
-- +goose StatementBegin
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'finance_reconciler') THEN
        BEGIN
            CREATE ROLE finance_reconciler LOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL; -- created meanwhile by a migration of another database
        END;
    END IF;
END
$$;
-- +goose StatementEnd

-- A resolution is pkg/reconcile's apply: the payment locked FOR UPDATE,
-- ledger.Apply's writes (status, entry, balance, hold release, transition,
-- as the status consumer's), and its event in the outbox, in one
-- transaction. A pass reads the open payments and, for the mismatch report
-- (pkg/verify, also `financectl verify`), the ledger, the outcome conflicts
-- and the last restore, against the processor's statement loaded in a
-- temporary table (TEMPORARY on the database: PUBLIC's by default). The
-- job's metrics read payments and the replayed dead letters. financectl
-- reconcile appends one admin_audit row per resolution it writes.
--
-- Not granted, and so refused: new payments (financectl recover inserts
-- them and stays the owner's), any other column of payments or wallets,
-- deleting or reading the outbox, webhook endpoints (their secrets),
-- reading or changing admin_audit rows, and every DDL.
GRANT SELECT ON payments, wallets, entries, payment_transitions, outcome_conflicts, restores,
    dlq_replayed_records TO finance_reconciler;
GRANT UPDATE (status, hold, failure_reason, updated_at) ON payments TO finance_reconciler;
GRANT UPDATE (balance, held, event_seq, updated_at) ON wallets TO finance_reconciler;
GRANT INSERT ON entries, payment_transitions, outbox, admin_audit TO finance_reconciler;

-- +goose Down
-- The role stays: it is cluster-wide, and other databases may use it.
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM finance_reconciler;
