-- irreversible: dropping list_transfer_offers loses every pending ownership transfer
DROP TABLE IF EXISTS list_transfer_offers;
