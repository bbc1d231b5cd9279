-- Revision 10 down: drops attachments and the object store's outbox, but only when they are
-- empty. Dropping recorded attachments would lose them and leave their objects in the bucket
-- for good (no trigger fires on DROP), so a revert across this revision with attachments
-- refuses, naming the counts: builds of revisions 7 to 9 run on revision 10 unchanged, so a
-- rollback can keep it (rollback.revertSchema: false, or a stable version declaring
-- migrations.schemaVersion 10).
DO $$
DECLARE
    n_attachments bigint := (SELECT count(*) FROM attachments);
    n_deletions bigint := (SELECT count(*) FROM object_deletions);
BEGIN
    IF n_attachments > 0 OR n_deletions > 0 THEN
        RAISE EXCEPTION 'revision 10 holds % attachment(s) and % object deletion(s): reverting it would lose them and leave their objects in the bucket. Keep revision 10 (builds of revisions 7 to 9 run on it), or delete the attachments through the API and let the janitor empty object_deletions first', n_attachments, n_deletions;
    END IF;
END $$;
DROP TRIGGER IF EXISTS attachments_object_deletion ON attachments;
DROP FUNCTION IF EXISTS attachments_enqueue_object_deletion();
DROP TABLE IF EXISTS object_deletions;
DROP TABLE IF EXISTS attachments;
