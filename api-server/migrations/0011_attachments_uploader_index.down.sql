-- no-transaction
DROP INDEX CONCURRENTLY IF EXISTS attachments_uploader_idx;
