-- +goose Up

-- A payment's globally unique identifier. payments.id comes from a sequence,
-- which is unique only within one database's history: a restore from a backup
-- rolls it back while Kafka and the processor keep their state, so ids repeat.
-- uid never repeats: the gateway sets a UUIDv7 at acceptance (time-ordered,
-- 74 random bits), and every Kafka record and the processor's idempotency key
-- ("payment-<uid>") carry it. A record or an execution whose uid the database
-- does not hold was not accepted by this database (a stale record, or an
-- execution lost in a restore) and is never applied or executed.
-- Rows made before this migration, and rows made in SQL (seed, recover), get
-- a random (v4) UUID.
ALTER TABLE payments ADD COLUMN uid uuid NOT NULL DEFAULT gen_random_uuid();
ALTER TABLE payments ADD CONSTRAINT payments_uid_unique UNIQUE (uid);

-- +goose Down
ALTER TABLE payments DROP COLUMN uid;
