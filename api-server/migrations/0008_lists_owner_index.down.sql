-- no-transaction
DROP INDEX CONCURRENTLY IF EXISTS lists_owner_idx;
