-- no-transaction
DROP INDEX CONCURRENTLY IF EXISTS outbox_events_published_idx;
