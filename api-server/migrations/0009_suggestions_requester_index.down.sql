-- no-transaction
DROP INDEX CONCURRENTLY IF EXISTS suggestion_requests_requested_by_idx;
