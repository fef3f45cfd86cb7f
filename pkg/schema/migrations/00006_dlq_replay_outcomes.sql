-- +goose Up

-- A replay of a payments.requested dead letter reads the letter's payment
-- (locked, by id and uid) before it sends the request again, and records why
-- it did not: skipped_final (the payment already succeeded or failed),
-- skipped_stale (no payment with that id and uid here, or the record has no
-- uid), skipped_key_expired (open, but created longer ago than the
-- processor keeps idempotency keys), skipped_claimed (claimed for the as-is
-- API, which has no key: it may have been executed). 'skipped' keeps its
-- meaning: replayed before by another run.
ALTER TABLE dlq_replayed_records DROP CONSTRAINT dlq_replayed_records_outcome_check;
ALTER TABLE dlq_replayed_records ADD CONSTRAINT dlq_replayed_records_outcome_check
    CHECK (outcome IN ('replayed', 'would_replay', 'skipped', 'skipped_final', 'skipped_stale',
                       'skipped_key_expired', 'skipped_claimed'));
-- Why the replay did what it did with the letter, for humans ('' for the
-- rows written before this migration, and for letters of topics whose
-- consumers are idempotent).
ALTER TABLE dlq_replayed_records ADD COLUMN reason text NOT NULL DEFAULT '';
-- The uid of the payment a payments.requested letter names, when it has a
-- valid one: payment_id alone may repeat after a database restore.
ALTER TABLE dlq_replayed_records ADD COLUMN payment_uid uuid;

-- +goose Down
ALTER TABLE dlq_replayed_records DROP COLUMN payment_uid;
ALTER TABLE dlq_replayed_records DROP COLUMN reason;
ALTER TABLE dlq_replayed_records DROP CONSTRAINT dlq_replayed_records_outcome_check;
-- Fails while a row has one of the new outcomes: delete those rows first.
ALTER TABLE dlq_replayed_records ADD CONSTRAINT dlq_replayed_records_outcome_check
    CHECK (outcome IN ('replayed', 'would_replay', 'skipped'));
