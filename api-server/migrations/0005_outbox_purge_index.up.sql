-- no-transaction
-- Revision 5: an index for the relay's purge of published outbox events (older than 24 h),
-- so the purge does not scan the whole table. Additive: builds of revision 4 run unchanged.
-- Built concurrently (writes go on during the build); one statement, outside a transaction.
-- Released as a plain CREATE INDEX; see migrate::AMENDED.
CREATE INDEX CONCURRENTLY IF NOT EXISTS outbox_events_published_idx ON outbox_events (published_at)
    WHERE published_at IS NOT NULL;
