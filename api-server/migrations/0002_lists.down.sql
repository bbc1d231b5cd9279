DROP TABLE items;
DROP TABLE list_members;
DROP TABLE lists;
