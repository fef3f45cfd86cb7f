-- +goose NO TRANSACTION
-- The feed page reads a user's newest entries below a cursor. With every
-- column it shows in the index (INCLUDE), the page is one range scan of the
-- index that never visits the table (an index-only scan, once VACUUM has
-- marked the pages all-visible): the cost of a page does not grow with the
-- table or with how deep the user pages, and entries scattered over the
-- heap by live traffic cost no random reads. It replaces entries_feed_idx,
-- whose key it has. CONCURRENTLY: a live table keeps taking entries while
-- the index builds (if the build fails, drop the INVALID index it leaves
-- and migrate again).

-- +goose Up
CREATE INDEX CONCURRENTLY IF NOT EXISTS entries_feed_covering_idx
    ON entries (user_id, id DESC) INCLUDE (payment_id, merchant_id, amount, occurred_at);
DROP INDEX CONCURRENTLY IF EXISTS entries_feed_idx;

-- +goose Down
CREATE INDEX CONCURRENTLY IF NOT EXISTS entries_feed_idx ON entries (user_id, id DESC);
DROP INDEX CONCURRENTLY IF EXISTS entries_feed_covering_idx;
