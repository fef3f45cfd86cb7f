-- +goose Up

-- Dispatch claims of the processor's as-is API, which has no idempotency key:
-- a second call for a payment may execute it twice. With PROCESSOR_API=as-is
-- the dispatcher inserts a payment's claim (ON CONFLICT DO NOTHING) before its
-- first processor call and calls only if the row was inserted. A payment whose
-- claim is already there may have been sent by an earlier owner (a crash or a
-- rebalance while its call was in flight): it is never sent again, it ends
-- unknown and is resolved by reconciliation. Rows are never updated.
CREATE TABLE dispatch_claims (
    payment_id bigint      PRIMARY KEY REFERENCES payments (id),
    claimed_at timestamptz NOT NULL DEFAULT now(),
    -- The claiming replica's Kafka transactional id.
    claimed_by text        NOT NULL
);

-- +goose Down
DROP TABLE dispatch_claims;
