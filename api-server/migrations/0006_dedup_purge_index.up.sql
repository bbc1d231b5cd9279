-- no-transaction
-- Revision 6: an index for the purge of old consumer deduplication records (older than 7 days).
-- Additive: builds of revision 4 and 5 run unchanged.
-- Built concurrently (writes go on during the build); one statement, outside a transaction.
-- Released as a plain CREATE INDEX; see migrate::AMENDED.
CREATE INDEX CONCURRENTLY IF NOT EXISTS processed_events_processed_at_idx ON processed_events (processed_at);
