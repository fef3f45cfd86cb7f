-- +goose Up

-- Webhook endpoints: where the webhook-delivery service sends signed
-- payment events (issue 15). user_id NULL receives every user's events (an
-- admin's endpoint); a user's own endpoint always has its user_id set.
-- event_types is the type filter ('payment.succeeded', ...); empty = all.
-- The secret is kept in clear: the HMAC needs it. During a rotation the
-- previous secret signs too, until previous_secret_expires_at.
CREATE TABLE webhook_endpoints (
    id                         uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    url                        text        NOT NULL CHECK (url <> '' AND length(url) <= 2048),
    event_types                text[]      NOT NULL DEFAULT '{}',
    user_id                    bigint      CHECK (user_id > 0),
    description                text        NOT NULL DEFAULT '' CHECK (length(description) <= 512),
    enabled                    boolean     NOT NULL DEFAULT true,
    -- Why the service disabled it ('gone': 410; 'failing': retries spent),
    -- empty when enabled or disabled by its owner.
    disabled_reason            text        NOT NULL DEFAULT '',
    secret                     text        NOT NULL CHECK (secret LIKE 'whsec\_%'),
    previous_secret            text        CHECK (previous_secret LIKE 'whsec\_%'),
    previous_secret_expires_at timestamptz,
    -- Who made it: the token's subject, for the audit trail.
    created_by                 text        NOT NULL DEFAULT '',
    created_at                 timestamptz NOT NULL DEFAULT now(),
    updated_at                 timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT webhook_endpoints_previous_secret CHECK ((previous_secret IS NULL) = (previous_secret_expires_at IS NULL))
);
CREATE INDEX webhook_endpoints_user_idx ON webhook_endpoints (user_id);

-- One message per (endpoint, event): the queue the delivery service works
-- from, and the record of what was sent. The consumer inserts the messages
-- of a batch of payments.events records before it commits their offsets (at
-- least once; a redelivered event adds nothing: the unique key).
--
-- Order per (endpoint, user): only a lane's head is sent, the pending
-- message with the lowest id of that (endpoint_id, user_id); the next one
-- waits until it is delivered or given up (state 'failed'). That is the whole
-- ordering state: no other table. next_attempt_at is the retry schedule, a
-- PostgreSQL-scheduled queue: no sleep holds a partition. leased_until keeps
-- a message to the replica that took it, and frees it if that replica dies.
CREATE TABLE webhook_messages (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    endpoint_id     uuid        NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    user_id         bigint      NOT NULL CHECK (user_id > 0),
    event_id        text        NOT NULL CHECK (event_id <> ''),
    event_type      text        NOT NULL CHECK (event_type LIKE 'payment.%'),
    payment_id      bigint      NOT NULL,
    -- The body as sent, the same bytes on every attempt and resend.
    payload         bytea       NOT NULL,
    state           text        NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts        integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    leased_until    timestamptz,
    last_error      text        NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT webhook_messages_once UNIQUE (endpoint_id, event_id)
);
CREATE INDEX webhook_messages_lane_idx ON webhook_messages (endpoint_id, user_id, id) WHERE state = 'pending';
CREATE INDEX webhook_messages_due_idx ON webhook_messages (next_attempt_at) WHERE state = 'pending';
CREATE INDEX webhook_messages_endpoint_idx ON webhook_messages (endpoint_id, created_at);
CREATE INDEX webhook_messages_event_idx ON webhook_messages (event_id);

-- The delivery log: every attempt, kept when its message is resent.
CREATE TABLE webhook_attempts (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id   bigint      NOT NULL REFERENCES webhook_messages (id) ON DELETE CASCADE,
    endpoint_id  uuid        NOT NULL,
    user_id      bigint      NOT NULL,
    event_id     text        NOT NULL,
    attempt      integer     NOT NULL CHECK (attempt > 0),
    -- 0 when no answer came (refused, timed out, breaker open).
    status_code  integer     NOT NULL DEFAULT 0,
    latency_ms   integer     NOT NULL DEFAULT 0 CHECK (latency_ms >= 0),
    -- The first bytes of the answer (WEBHOOK_RESPONSE_LOG_BYTES).
    response     text        NOT NULL DEFAULT '',
    error        text        NOT NULL DEFAULT '',
    attempted_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_attempts_endpoint_idx ON webhook_attempts (endpoint_id, attempted_at);
CREATE INDEX webhook_attempts_message_idx ON webhook_attempts (message_id, id);
CREATE INDEX webhook_attempts_event_idx ON webhook_attempts (event_id);

-- +goose Down
DROP TABLE webhook_attempts;
DROP TABLE webhook_messages;
DROP TABLE webhook_endpoints;
