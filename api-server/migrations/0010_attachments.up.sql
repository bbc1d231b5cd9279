-- Revision 10: attachments of lists, and the object store's outbox.
--
-- An attachment's bytes live in the object store (S3_BUCKET) under object_key; this table
-- holds its metadata. An upload is 'pending' until the client confirms it and the API has
-- seen the object (HEAD); only 'ready' attachments are listed.
--
-- object_deletions is the transactional outbox of the object store: the trigger below writes
-- the key of every attachment row deleted, by any path (the API, the sweeper, a list or user
-- deletion cascading, SQL by hand), in the same transaction; the API's janitor deletes the
-- objects and retries until the store confirms, so a store that is down loses nothing.
-- An upload URL may still be used after its row is gone (until it expires; S3 checks the
-- expiry when a request starts, and allows 15 minutes of clock skew): every key is deleted
-- at once and once more at final_at, when no upload can still arrive: 15 minutes after its
-- URL's expiry plus the time its size takes at 64 KiB/s (a slow upload started just in time).
--
-- New tables only: builds of revisions 7 to 9 run unchanged on this schema.
CREATE TABLE attachments (
    id                uuid PRIMARY KEY,
    list_id           uuid NOT NULL REFERENCES lists (id) ON DELETE CASCADE,
    item_id           uuid REFERENCES items (id) ON DELETE SET NULL,
    uploader_id       uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name              text NOT NULL,
    content_type      text NOT NULL,
    size_bytes        bigint NOT NULL CHECK (size_bytes > 0),
    sha256            text NOT NULL,
    object_key        text NOT NULL UNIQUE,
    state             text NOT NULL CHECK (state IN ('pending', 'ready')),
    upload_expires_at timestamptz NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    confirmed_at      timestamptz
);
CREATE INDEX attachments_list_idx ON attachments (list_id, created_at);
CREATE INDEX attachments_item_idx ON attachments (item_id) WHERE item_id IS NOT NULL;
CREATE INDEX attachments_pending_idx ON attachments (upload_expires_at) WHERE state = 'pending';

CREATE TABLE object_deletions (
    object_key      text PRIMARY KEY,
    next_attempt_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    final_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    attempts        integer NOT NULL DEFAULT 0,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX object_deletions_due_idx ON object_deletions (next_attempt_at);

CREATE FUNCTION attachments_enqueue_object_deletion() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO object_deletions (object_key, next_attempt_at, final_at)
    VALUES (
        OLD.object_key,
        clock_timestamp(),
        greatest(
            clock_timestamp(),
            OLD.upload_expires_at + interval '15 minutes'
                + make_interval(secs => OLD.size_bytes / 65536.0)
        )
    )
    ON CONFLICT (object_key) DO NOTHING;
    RETURN OLD;
END;
$$;

CREATE TRIGGER attachments_object_deletion
    AFTER DELETE ON attachments
    FOR EACH ROW EXECUTE FUNCTION attachments_enqueue_object_deletion();
