-- +goose Up

-- Least privilege (issue 16, point 6): one PostgreSQL role per service, with
-- only the grants its own SQL needs. The schema's owner (the role that runs
-- `financectl migrate`) keeps everything else: financectl (seed, verify,
-- reconcile, recover, dlq) runs as the owner, an operator's tool.
--
-- Roles are cluster-wide, so they are created only when missing, and a
-- concurrent migration of another database creating the same role at the
-- same moment is not an error. They are LOGIN without a password: dev and
-- the tests use trust authentication; in production an operator sets a
-- password (ALTER ROLE finance_gateway PASSWORD '...') or creates the roles
-- beforehand, in which case the migrating role needs no CREATEROLE.
--
-- Grants are per database (a database cloned from a template keeps them).
-- A migration that adds a table must grant on it to the services that use
-- it; TestServiceRoleGrants (pkg/schema) checks the key ones.
-- +goose StatementBegin
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['finance_gateway', 'finance_outbox_relay', 'finance_dispatcher',
                             'finance_status_consumer', 'finance_webhook_delivery'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I LOGIN', r);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL; -- created meanwhile by a migration of another database
            END;
        END IF;
    END LOOP;
END
$$;
-- +goose StatementEnd

-- gateway: accepts payments (payment, hold, transition, outbox record in one
-- transaction), serves reads and push, and the admin routes: DLQ replay
-- (dlq_replays audit, the payment locked FOR UPDATE, which needs UPDATE on
-- one column) and webhook endpoints. It never settles: no UPDATE of
-- wallets.balance, of payments.status, no entries written.
GRANT SELECT ON merchants, wallets, payments, entries, payment_transitions, dispatch_claims,
    dlq_replays, dlq_replayed_records, webhook_endpoints, webhook_messages, webhook_attempts
    TO finance_gateway;
GRANT INSERT ON payments, payment_transitions, outbox, dlq_replays, dlq_replayed_records,
    webhook_endpoints TO finance_gateway;
GRANT UPDATE (held, event_seq, updated_at) ON wallets TO finance_gateway;
GRANT UPDATE (updated_at) ON payments TO finance_gateway;
GRANT UPDATE (selected, replayed, skipped, error, finished_at) ON dlq_replays TO finance_gateway;
GRANT UPDATE, DELETE ON webhook_endpoints TO finance_gateway;
GRANT UPDATE (state, attempts, next_attempt_at, leased_until, updated_at) ON webhook_messages TO finance_gateway;

-- outbox-relay: reads the outbox in order and deletes what Kafka acknowledged.
GRANT SELECT, DELETE ON outbox TO finance_outbox_relay;

-- dispatcher: reads a payment's status and claims it (the as-is guard).
GRANT SELECT ON payments TO finance_dispatcher;
GRANT SELECT, INSERT, DELETE ON dispatch_claims TO finance_dispatcher;

-- status-consumer: applies outcomes through pkg/ledger (status, entry,
-- balance, hold release, transition) and records conflicts.
GRANT SELECT ON merchants, wallets, payments, entries, payment_transitions, outcome_conflicts
    TO finance_status_consumer;
GRANT UPDATE (status, hold, failure_reason, updated_at) ON payments TO finance_status_consumer;
GRANT UPDATE (balance, held, event_seq, updated_at) ON wallets TO finance_status_consumer;
GRANT INSERT ON entries, payment_transitions, outcome_conflicts TO finance_status_consumer;

-- webhook-delivery: fans events out to endpoints, leases, attempts, and
-- disables failing endpoints. It reads payments for their idempotency keys.
GRANT SELECT ON payments, webhook_endpoints, webhook_messages, webhook_attempts
    TO finance_webhook_delivery;
GRANT INSERT, UPDATE ON webhook_messages TO finance_webhook_delivery;
GRANT INSERT ON webhook_attempts TO finance_webhook_delivery;
GRANT UPDATE (enabled, disabled_reason, updated_at) ON webhook_endpoints TO finance_webhook_delivery;

-- +goose Down
-- The roles stay: they are cluster-wide, and other databases may use them.
REVOKE ALL ON ALL TABLES IN SCHEMA public
    FROM finance_gateway, finance_outbox_relay, finance_dispatcher,
         finance_status_consumer, finance_webhook_delivery;
