//! RabbitMQ topology and connections.

use std::time::Duration;

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};

use crate::{Error, Result};

/// Names of the exchange and queues, derived from one prefix (`AMQP_PREFIX`, default
/// `listacompra`) so that several deployments or tests can share one broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// The topic exchange every outbox event is published to (routing key = event type).
    pub exchange: String,
    /// The durable queue of the AI worker.
    pub ai_queue: String,
}

impl Topology {
    /// Names under `prefix`.
    pub fn new(prefix: &str) -> Self {
        Self {
            exchange: format!("{prefix}.events"),
            ai_queue: format!("{prefix}.ai.suggestions"),
        }
    }
}

/// Connects within `timeout`.
pub async fn connect(url: &str, timeout: Duration) -> Result<Connection> {
    match tokio::time::timeout(
        timeout,
        Connection::connect(url, ConnectionProperties::default()),
    )
    .await
    {
        Ok(conn) => conn.map_err(Error::amqp("connecting")),
        Err(_) => Err(Error::Amqp {
            context: "connecting",
            source: lapin::Error::from(lapin::ErrorKind::InvalidConnectionState(
                lapin::ConnectionState::Closed,
            )),
        }),
    }
}

/// Declares the exchange, the AI queue and its binding (idempotent).
pub async fn declare(channel: &Channel, topology: &Topology) -> Result<()> {
    channel
        .exchange_declare(
            topology.exchange.as_str().into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(Error::amqp("declaring the events exchange"))?;
    channel
        .queue_declare(
            topology.ai_queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(Error::amqp("declaring the AI queue"))?;
    channel
        .queue_bind(
            topology.ai_queue.as_str().into(),
            topology.exchange.as_str().into(),
            crate::outbox::SUGGESTION_REQUESTED.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(Error::amqp("binding the AI queue"))?;
    Ok(())
}
