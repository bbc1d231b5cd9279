-- no-transaction
DROP INDEX CONCURRENTLY IF EXISTS suggestion_requests_pending_idx;
