-- irreversible: dropping lists and items deletes every shopping list and item
DROP TABLE items;
DROP TABLE list_members;
DROP TABLE lists;
