-- +goose Up

-- Audit of dead-letter replays: one row per run of `financectl dlq replay` or
-- POST /v1/admin/dlq/replay, dry runs included: who asked, when, with which
-- filter, and what came of it.
CREATE TABLE dlq_replays (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Who: "token:<sub>" for the admin API, "cli:<os user>" for financectl.
    actor       text        NOT NULL CHECK (actor <> ''),
    dry_run     boolean     NOT NULL,
    force       boolean     NOT NULL DEFAULT false,
    filter      jsonb       NOT NULL,
    -- Records per second the run was paced at.
    rate        double precision NOT NULL CHECK (rate > 0),
    selected    integer     NOT NULL DEFAULT 0,
    replayed    integer     NOT NULL DEFAULT 0,
    skipped     integer     NOT NULL DEFAULT 0,
    -- Why the run stopped early, '' when it went through.
    error       text        NOT NULL DEFAULT '',
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);

-- Which dead letters each run looked at, and what it did with each.
CREATE TABLE dlq_replayed_records (
    replay_id          bigint      NOT NULL REFERENCES dlq_replays (id),
    dlq_topic          text        NOT NULL,
    dlq_partition      integer     NOT NULL,
    dlq_offset         bigint      NOT NULL,
    original_topic     text        NOT NULL,
    original_partition integer     NOT NULL,
    original_offset    bigint      NOT NULL,
    payment_id         bigint      NOT NULL DEFAULT 0,
    user_id            bigint      NOT NULL DEFAULT 0,
    -- replayed: re-published to original_topic; would_replay: a dry run's
    -- pick; skipped: replayed before by another run (and not forced).
    outcome            text        NOT NULL CHECK (outcome IN ('replayed', 'would_replay', 'skipped')),
    at                 timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (replay_id, dlq_topic, dlq_partition, dlq_offset)
);
-- "Was this dead letter replayed already?"
CREATE INDEX dlq_replayed_records_letter_idx
    ON dlq_replayed_records (dlq_topic, dlq_partition, dlq_offset)
    WHERE outcome = 'replayed';

-- +goose Down
DROP TABLE dlq_replayed_records;
DROP TABLE dlq_replays;
