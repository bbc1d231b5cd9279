//! The RabbitMQ adapter (lapin): topology, connections and confirmed publishing.

use std::time::Duration;

use lapin::options::{
    BasicPublishOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};

use crate::config::CaFile;
use crate::domain::Event;
use crate::{Error, Result};

/// Where the broker is: `RABBITMQ_URL` and, for `amqps://`, the CAs to trust
/// (`RABBITMQ_CA_FILE`, added to the system's roots).
#[derive(Clone)]
pub struct Endpoint {
    /// The AMQP URL (may hold a password: never printed).
    pub url: String,
    /// Extra CA certificates for `amqps://`.
    pub ca: Option<CaFile>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("tls", &self.tls())
            .field("ca", &self.ca)
            .finish_non_exhaustive()
    }
}

impl From<String> for Endpoint {
    fn from(url: String) -> Self {
        Self { url, ca: None }
    }
}

impl From<&str> for Endpoint {
    fn from(url: &str) -> Self {
        url.to_owned().into()
    }
}

impl Endpoint {
    /// `amqps://`.
    pub fn tls(&self) -> bool {
        self.url.starts_with("amqps://")
    }

    /// What a failed connection was doing, naming the TLS settings (so a certificate error
    /// points at the variable to fix).
    fn connecting(&self) -> &'static str {
        match (self.tls(), &self.ca) {
            (false, _) => "connecting",
            (true, Some(_)) => {
                "connecting with TLS (the server's certificate must be signed by a CA in RABBITMQ_CA_FILE or the system's roots)"
            }
            (true, None) => {
                "connecting with TLS (the server's certificate must be signed by a CA in the system's roots; set RABBITMQ_CA_FILE for a private CA)"
            }
        }
    }
}

/// Names of the exchange and queues, derived from one prefix (`AMQP_PREFIX`, default
/// `listacompra`) so that several deployments or tests can share one broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// The topic exchange every outbox event is published to (routing key = event type).
    pub exchange: String,
    /// The durable queue of the AI worker.
    pub ai_queue: String,
    /// The durable dead-letter queue of the AI worker: messages that failed
    /// `AI_MAX_ATTEMPTS` times, kept for inspection (`<ai_queue>.dlq`).
    pub ai_dead_letters: String,
}

impl Topology {
    /// Names under `prefix`.
    pub fn new(prefix: &str) -> Self {
        Self {
            exchange: format!("{prefix}.events"),
            ai_queue: format!("{prefix}.ai.suggestions"),
            ai_dead_letters: format!("{prefix}.ai.suggestions.dlq"),
        }
    }
}

/// Connects to `url` (system roots for `amqps://`) within `timeout`.
pub async fn connect(url: &str, timeout: Duration) -> Result<Connection> {
    connect_to(&Endpoint::from(url), timeout).await
}

/// Connects to `endpoint` within `timeout`.
pub async fn connect_to(endpoint: &Endpoint, timeout: Duration) -> Result<Connection> {
    let context = endpoint.connecting();
    let builder = lapin::ConnectionBuilder::new()
        .map_err(Error::amqp("starting the AMQP runtime"))?
        .with_uri_str(endpoint.url.clone())
        .with_properties(ConnectionProperties::default())
        .with_tls_config(lapin::tcp::OwnedTLSConfig {
            identity: None,
            cert_chain: endpoint.ca.as_ref().map(|ca| ca.pem.clone()),
        });
    match tokio::time::timeout(timeout, builder.connect()).await {
        Ok(conn) => conn.map_err(Error::amqp(context)),
        Err(_) => Err(Error::Amqp {
            context,
            source: lapin::Error::from(lapin::ErrorKind::InvalidConnectionState(
                lapin::ConnectionState::Closed,
            )),
        }),
    }
}

/// Declares the exchange, the AI queue, its binding and its dead-letter queue (idempotent).
///
/// The queues are classic durable queues without arguments, exactly as earlier releases
/// declared the AI queue: a declaration with other arguments is refused by the broker for an
/// existing queue (`PRECONDITION_FAILED`, closing the channel), which would stop an upgraded
/// worker. Attempts are counted in a message header instead (see [`crate::ai::Worker`]).
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
        .queue_declare(
            topology.ai_dead_letters.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(Error::amqp("declaring the AI dead-letter queue"))?;
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

/// Longest routing key AMQP 0-9-1 can carry (a short string).
pub const MAX_ROUTING_KEY: usize = 255;

/// Refuses values AMQP cannot carry as short strings (exchange, routing key, type).
fn short_strings(id: uuid::Uuid, values: &[&str]) -> Result<()> {
    match values.iter().find(|v| v.len() > MAX_ROUTING_KEY) {
        Some(long) => Err(Error::Unpublishable {
            event_id: id,
            reason: format!(
                "{:?}... is {} bytes long; AMQP carries at most {MAX_ROUTING_KEY} (exchange, routing key, type)",
                long.chars().take(20).collect::<String>(),
                long.len()
            ),
        }),
        None => Ok(()),
    }
}

/// Publishes one event and waits for the broker's confirm; `trace` (W3C trace context, may
/// be empty) goes into the message's headers.
pub async fn publish(
    channel: &Channel,
    exchange: &str,
    event: &Event,
    trace: &std::collections::HashMap<String, String>,
) -> Result<()> {
    // The type is also a property (a short string): check it before building them, as lapin
    // panics on a short string over 255 bytes (which would end the relay's task).
    short_strings(event.id, &[exchange, &event.event_type])?;
    let body = serde_json::to_vec(event).map_err(Error::json("encoding an event"))?;
    let mut headers = FieldTable::default();
    for (name, value) in trace {
        headers.insert(
            name.as_str().into(),
            lapin::types::AMQPValue::LongString(value.as_str().into()),
        );
    }
    let props = BasicProperties::default()
        .with_headers(headers)
        .with_message_id(event.id.to_string().into())
        .with_type(event.event_type.as_str().into())
        .with_content_type("application/json".into())
        .with_delivery_mode(2);
    publish_to(channel, exchange, &event.event_type, &body, props, event.id).await
}

/// Publishes `body` to `exchange` with `routing_key` (the default exchange `""` routes to
/// the queue of that name) and waits for the broker's confirm; `id` names the message in
/// errors. The channel must be in confirm mode.
pub async fn publish_to(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    props: BasicProperties,
    id: uuid::Uuid,
) -> Result<()> {
    short_strings(id, &[exchange, routing_key])?;
    let confirm = async {
        channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions::default(),
                body,
                props,
            )
            .await
            .map_err(Error::amqp("publishing"))?
            .await
            .map_err(Error::amqp("waiting for the publisher confirm"))
    };
    match tokio::time::timeout(Duration::from_secs(10), confirm).await {
        Ok(Ok(c)) if c.is_ack() => Ok(()),
        Ok(Ok(_)) | Err(_) => Err(Error::NotConfirmed { event_id: id }),
        Ok(Err(err)) => Err(err),
    }
}
