-- no-transaction
-- Revision 12: a partial index on the pending suggestion requests by age. The AI worker
-- samples the oldest pending request every few seconds (listacompra_ai_oldest_pending_seconds);
-- with it that is one index lookup, however many finished requests the table holds. Built
-- concurrently, one statement, outside a transaction. Additive: builds of revisions 7 to 11
-- run unchanged.
CREATE INDEX CONCURRENTLY IF NOT EXISTS suggestion_requests_pending_idx
    ON suggestion_requests (created_at) WHERE status = 'pending';
