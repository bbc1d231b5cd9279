-- no-transaction
DROP INDEX CONCURRENTLY IF EXISTS processed_events_processed_at_idx;
