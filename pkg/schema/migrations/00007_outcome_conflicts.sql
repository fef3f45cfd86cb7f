-- +goose Up

-- Outcomes that contradict a payment's final status: a `succeeded` outcome
-- for a payment that is `failed` here (the processor paid, the ledger
-- failed), or a `failed` one for a payment that is `succeeded` here. The
-- status consumer changes nothing in the ledger for such an outcome: it
-- writes one row here, in the transaction that found the payment final, and
-- dead-letters the outcome (reason `conflict`). The dead letter lives in
-- Kafka; this row is the durable record, which `financectl verify` reports
-- (`outcome_conflict`) until an operator has reconciled the payment with the
-- processor and marked the row resolved.
CREATE TABLE outcome_conflicts (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    payment_id  bigint      NOT NULL REFERENCES payments (id),
    payment_uid uuid        NOT NULL,
    user_id     bigint      NOT NULL REFERENCES wallets (user_id),
    -- The payment's final status here, and the outcome that contradicts it.
    status      text        NOT NULL CHECK (status IN ('succeeded', 'failed')),
    outcome     text        NOT NULL CHECK (outcome IN ('succeeded', 'failed')),
    -- The outcome's reason (a decline, say) and who saw it.
    reason      text        NOT NULL DEFAULT '',
    actor       text        NOT NULL CHECK (actor <> ''),
    detected_at timestamptz NOT NULL DEFAULT now(),
    -- Set together by the operator who settled it: when, who ("cli:<os
    -- user>", as the dlq replays'), and what was done.
    resolved_at timestamptz,
    resolved_by text,
    resolution  text,
    CONSTRAINT outcome_conflicts_contradicts CHECK (outcome <> status),
    -- A redelivered or replayed outcome adds no second row.
    CONSTRAINT outcome_conflicts_once UNIQUE (payment_id, outcome),
    CONSTRAINT outcome_conflicts_resolved CHECK (
        (resolved_at IS NULL) = (resolved_by IS NULL) AND (resolved_at IS NULL) = (resolution IS NULL)
        AND (resolved_by IS NULL OR resolved_by <> '') AND (resolution IS NULL OR resolution <> ''))
);
CREATE INDEX outcome_conflicts_unresolved_idx ON outcome_conflicts (id) WHERE resolved_at IS NULL;

-- +goose Down
DROP TABLE outcome_conflicts;
