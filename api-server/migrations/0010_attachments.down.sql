-- Revision 10 down: drops attachments and the object store's outbox. The objects of the
-- attachments still recorded stay in the bucket (under attachments/); a schema revert across
-- this revision loses their metadata, so the operator's rollback keeps revision 10 whenever
-- the stable version runs on it (migrations.minSchemaVersion).
DROP TRIGGER IF EXISTS attachments_object_deletion ON attachments;
DROP FUNCTION IF EXISTS attachments_enqueue_object_deletion();
DROP TABLE IF EXISTS object_deletions;
DROP TABLE IF EXISTS attachments;
