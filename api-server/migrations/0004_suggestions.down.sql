DROP TABLE suggestion_requests;
