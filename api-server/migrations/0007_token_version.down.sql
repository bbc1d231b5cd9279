DROP TABLE list_invitations;
ALTER TABLE users DROP COLUMN token_version;
