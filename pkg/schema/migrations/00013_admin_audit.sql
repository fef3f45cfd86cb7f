-- +goose Up

-- Admin actions (issue 16, point 7): one row per request on an admin route
-- (/v1/admin/..., refused attempts included) and per change of a webhook
-- endpoint (create, update, delete, secret rotation, resend, recover), by
-- whom (actor: the token's subject, "admin:<id>" for an admin token), what
-- (action: method and route) and on what (target: the route's parameters,
-- or the created resource's Location), with the answer's status. The
-- gateway writes it after the answer (httpapi's audit middleware); a DLQ
-- replay's run and records stay in dlq_replays as well.
CREATE TABLE admin_audit (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    actor      text        NOT NULL CHECK (actor <> ''),
    action     text        NOT NULL CHECK (action <> ''),
    target     text        NOT NULL DEFAULT '',
    status     integer     NOT NULL,
    request_id text        NOT NULL DEFAULT ''
);
CREATE INDEX admin_audit_at_idx ON admin_audit (at);

-- The gateway appends; nobody but the owner updates or deletes.
GRANT SELECT, INSERT ON admin_audit TO finance_gateway;

-- +goose Down
DROP TABLE admin_audit;
