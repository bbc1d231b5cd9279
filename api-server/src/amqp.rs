//! The RabbitMQ adapter (lapin): topology, connections and confirmed publishing.

use std::time::Duration;

use lapin::options::{
    BasicPublishOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};

use crate::domain::Event;
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

/// Publishes one event and waits for the broker's confirm.
pub async fn publish(channel: &Channel, exchange: &str, event: &Event) -> Result<()> {
    let body = serde_json::to_vec(event).map_err(Error::json("encoding an event"))?;
    let props = BasicProperties::default()
        .with_message_id(event.id.to_string().into())
        .with_type(event.event_type.as_str().into())
        .with_content_type("application/json".into())
        .with_delivery_mode(2);
    let confirm = async {
        channel
            .basic_publish(
                exchange.into(),
                event.event_type.as_str().into(),
                BasicPublishOptions::default(),
                &body,
                props,
            )
            .await
            .map_err(Error::amqp("publishing"))?
            .await
            .map_err(Error::amqp("waiting for the publisher confirm"))
    };
    match tokio::time::timeout(Duration::from_secs(10), confirm).await {
        Ok(Ok(c)) if c.is_ack() => Ok(()),
        Ok(Ok(_)) | Err(_) => Err(Error::NotConfirmed { event_id: event.id }),
        Ok(Err(err)) => Err(err),
    }
}
