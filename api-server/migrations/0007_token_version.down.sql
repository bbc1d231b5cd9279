-- irreversible: dropping users.token_version makes every token revoked by a logout or a password change valid again
DROP TABLE list_invitations;
ALTER TABLE users DROP COLUMN token_version;
