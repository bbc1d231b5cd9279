-- irreversible: dropping users deletes every account (and, through their lists, everything else)
DROP TABLE users;
