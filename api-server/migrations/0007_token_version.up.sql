-- Revision 7: a per-user token version. Access tokens carry the version they were issued at;
-- logout increments it, which revokes every earlier token of that user. Additive (a constant
-- default, so no table rewrite): builds of revision 4 to 6 run unchanged.
ALTER TABLE users ADD COLUMN token_version bigint NOT NULL DEFAULT 0;

-- Sharing with an e-mail that has no account records a pending invitation, shown among the
-- list's members like a member (with the id answered when it was shared), so that sharing
-- does not tell who has an account; registering with that e-mail turns it into membership.
-- Additive: builds of revision 4 to 6 never read it.
CREATE TABLE list_invitations (
    list_id    uuid NOT NULL REFERENCES lists (id) ON DELETE CASCADE,
    user_id    uuid NOT NULL,
    email      text NOT NULL,
    role       text NOT NULL CHECK (role IN ('owner', 'member')),
    invited_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (list_id, user_id)
);
CREATE UNIQUE INDEX list_invitations_list_email_key ON list_invitations (list_id, lower(email));
CREATE INDEX list_invitations_email_idx ON list_invitations (lower(email));
