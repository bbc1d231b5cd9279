DROP TABLE IF EXISTS list_transfer_offers;
