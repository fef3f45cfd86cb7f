-- +goose Up

-- Traces (docs/operations.md#traces): the W3C traceparent of the request
-- or event that wrote a row, so that the step which picks the row up later
-- continues the payment's trace. NULL when there was none (rows written
-- before this migration, the reconciler's events). The outbox relay puts it
-- in the Kafka record's headers; webhook delivery parents each attempt on it.
-- The service roles' table-wide grants (00012: INSERT on outbox for the
-- gateway, SELECT on it for the relay, INSERT and SELECT on
-- webhook_messages for webhook delivery) already cover the new columns.
ALTER TABLE outbox ADD COLUMN traceparent text;
ALTER TABLE webhook_messages ADD COLUMN traceparent text;

-- +goose Down
ALTER TABLE webhook_messages DROP COLUMN traceparent;
ALTER TABLE outbox DROP COLUMN traceparent;
