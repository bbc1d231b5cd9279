-- irreversible: dropping suggestion_requests loses every AI suggestion request and its answer
DROP TABLE suggestion_requests;
