-- no-transaction
-- Revision 11: an index on attachments (uploader_id) that also holds size_bytes. The quota
-- check of every announced upload sums a user's sizes (an index-only scan with it), and
-- deleting a user cascades to their attachments (a foreign key PostgreSQL does not index by
-- itself). Built concurrently, one statement, outside a transaction. Additive: builds of
-- revisions 7 to 10 run unchanged.
CREATE INDEX CONCURRENTLY IF NOT EXISTS attachments_uploader_idx
    ON attachments (uploader_id) INCLUDE (size_bytes);
