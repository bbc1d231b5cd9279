-- Revision 13: ownership transfer offers. The creator of a list offers it to a member (or to a
-- pending invitation, answered alike so the answer tells nobody who has an account); the
-- list's owner_id changes only when the recipient accepts. One offer per list (a new one
-- replaces it); to_id is not a foreign key because an invitation's id names no user.
--
-- A new table only: builds of revisions 7 to 12 run unchanged on this schema; on an older
-- schema only the transfer endpoints answer 503 naming this revision.
CREATE TABLE list_transfer_offers (
    list_id    uuid PRIMARY KEY REFERENCES lists (id) ON DELETE CASCADE,
    from_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    to_id      uuid NOT NULL,
    offered_at timestamptz NOT NULL DEFAULT now()
);
