-- no-transaction
-- Revision 9: an index on suggestion_requests (requested_by). Deleting a user cascades to the
-- suggestion requests they made (a foreign key PostgreSQL does not index by itself); without
-- it each deletion scans the table. Built concurrently, one statement, outside a transaction.
-- Additive: builds of revisions 7 and 8 run unchanged.
CREATE INDEX CONCURRENTLY IF NOT EXISTS suggestion_requests_requested_by_idx
    ON suggestion_requests (requested_by);
