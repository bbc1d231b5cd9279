-- no-transaction
-- Revision 8: an index on lists (owner_id). The lists-per-user cap counts a user's lists on
-- every list created, and deleting a user cascades to their lists; without it both scan the
-- table. Built concurrently (writes go on during the build); one statement, outside a
-- transaction. Additive: builds of revision 7 run unchanged.
CREATE INDEX CONCURRENTLY IF NOT EXISTS lists_owner_idx ON lists (owner_id);
