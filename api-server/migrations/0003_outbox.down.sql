-- irreversible: dropping the outbox loses the events not yet relayed to RabbitMQ and the record of those processed
DROP TABLE processed_events;
DROP TABLE outbox_events;
