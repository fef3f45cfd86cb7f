-- +goose Up

-- A payment re-created by `financectl recover` from the processor's
-- execution of a payment that this database lost (a restore from a backup
-- older than the payment) has source 'recovered'.
--
-- NOT VALID: every existing row passed the stricter check dropped here, so
-- the new one needs no scan of the table (which would hold its exclusive
-- lock for the whole scan); it is enforced on every new or changed row all
-- the same. `ALTER TABLE payments VALIDATE CONSTRAINT payments_source_check`
-- marks it validated at any time without blocking writes.
ALTER TABLE payments DROP CONSTRAINT payments_source_check;
ALTER TABLE payments ADD CONSTRAINT payments_source_check
    CHECK (source IN ('api', 'seed', 'recovered')) NOT VALID;

-- Database restores, one row per run of `financectl after-restore`, the
-- command an operator runs once PostgreSQL is back from a backup. The
-- processor and Kafka keep what happened after the backup; this row says
-- when the database was found restored, by whom, and what the first
-- reconciliation pass found, so that `financectl verify` and operators can
-- tell an execution_without_payment of a restore from one of a bug.
CREATE TABLE restores (
    id                         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- "cli:<os user>", as the dlq replays'.
    actor                      text        NOT NULL CHECK (actor <> ''),
    recorded_at                timestamptz NOT NULL DEFAULT now(),
    -- The schema version the restored database had before after-restore
    -- migrated it.
    schema_version_before      bigint      NOT NULL,
    -- The newest payment the backup holds (by id) and when it was accepted:
    -- about the backup's point in time. 0 and NULL for an empty database.
    last_payment_id            bigint      NOT NULL DEFAULT 0,
    last_payment_at            timestamptz,
    -- What the reconciliation pass found; NULL until it finished.
    executions_without_payment bigint,
    resolved                   bigint,
    left_open                  bigint,
    finished_at                timestamptz
);

-- Payments re-created by `financectl recover --apply`, one row each: the
-- processor's execution it was made from and who made it. The payment
-- itself (uid = the key's uid, source 'recovered', succeeded, its entry and
-- its payment_transitions row) is written in the same transaction.
CREATE TABLE recoveries (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    payment_id    bigint      NOT NULL UNIQUE REFERENCES payments (id),
    -- The processor's idempotency key "payment-<uid>" and its reference of
    -- the execution.
    processor_key text        NOT NULL UNIQUE,
    processor_ref text        NOT NULL,
    executed_at   timestamptz NOT NULL,
    actor         text        NOT NULL CHECK (actor <> ''),
    -- The latest restore recorded when it ran; NULL when none was.
    restore_id    bigint      REFERENCES restores (id),
    recovered_at  timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE recoveries;
DROP TABLE restores;
-- Fails while a 'recovered' payment exists: delete or re-source it first.
ALTER TABLE payments DROP CONSTRAINT payments_source_check;
ALTER TABLE payments ADD CONSTRAINT payments_source_check CHECK (source IN ('api', 'seed'));
