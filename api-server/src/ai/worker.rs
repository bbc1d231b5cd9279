//! The AI worker: consumes suggestion requests from RabbitMQ and hands them to the
//! [`SuggestionJobs`] use case; acks what was handled, retries what failed a bounded number
//! of times, and moves what keeps failing to the dead-letter queue.
//!
//! Attempts are counted in the message's `x-attempts` header: a failed attempt republishes
//! the message (publisher-confirmed) with the count increased, then acks the original. The
//! AI queue is a classic queue declared without arguments by every earlier release, so this
//! needs no change of its arguments (which the broker refuses for an existing queue with
//! `PRECONDITION_FAILED`), unlike `x-delivery-count` (quorum queues only) or a dead-letter
//! exchange argument.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions, ConfirmSelectOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel};
use tokio::sync::watch;
use tracing::Instrument as _;
use uuid::Uuid;

use crate::amqp::Topology;
use crate::domain::{Event, SuggestionJob};
use crate::metrics::Metrics;
use crate::outbox;
use crate::ports::{SuggestionCache, SuggestionProvider};
use crate::store::PgStore;
use crate::usecases::{Handled, SuggestionJobs};
use crate::{Error, Result};

/// The header holding how many attempts a message has had.
pub const ATTEMPTS_HEADER: &str = "x-attempts";

/// The header holding why the last attempt failed (dead-lettered messages).
pub const LAST_ERROR_HEADER: &str = "x-last-error";

/// Default of `AI_MAX_ATTEMPTS`.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;

/// Longest pause before a failed message is tried again.
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(5);

/// The consumer of suggestion requests.
#[derive(Debug, Clone)]
pub struct Worker {
    jobs: SuggestionJobs<PgStore>,
    metrics: Metrics,
    broker: crate::amqp::Endpoint,
    topology: Topology,
    /// Attempts of one message before it is dead-lettered (`AI_MAX_ATTEMPTS`, at least 1).
    pub max_attempts: u32,
}

/// A string header of a delivery (`traceparent`, `tracestate`).
fn header_string(properties: &BasicProperties, name: &str) -> Option<String> {
    match properties.headers().as_ref()?.inner().get(name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

/// The attempts a delivery has had before this one (its `x-attempts` header; 0 without).
pub fn attempts_of(properties: &BasicProperties) -> u32 {
    let value = properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get(ATTEMPTS_HEADER).cloned());
    let n: i64 = match value {
        Some(AMQPValue::ShortShortUInt(n)) => n.into(),
        Some(AMQPValue::ShortUInt(n)) => n.into(),
        Some(AMQPValue::LongUInt(n)) => n.into(),
        Some(AMQPValue::ShortShortInt(n)) => n.into(),
        Some(AMQPValue::ShortInt(n)) => n.into(),
        Some(AMQPValue::LongInt(n)) => n.into(),
        Some(AMQPValue::LongLongInt(n)) => n,
        _ => 0,
    };
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

/// `properties` with the attempt count (and, when given, the last error) set.
fn with_attempts(
    properties: &BasicProperties,
    attempts: u32,
    error: Option<&str>,
) -> BasicProperties {
    let mut headers = properties.headers().clone().unwrap_or_default();
    headers.insert(ATTEMPTS_HEADER.into(), AMQPValue::LongUInt(attempts));
    if let Some(error) = error {
        let excerpt: String = error.chars().take(1000).collect();
        headers.insert(
            LAST_ERROR_HEADER.into(),
            AMQPValue::LongString(LongString::from(excerpt)),
        );
    }
    properties
        .clone()
        .with_headers(headers)
        .with_delivery_mode(2)
}

impl Worker {
    /// A worker.
    pub fn new(
        store: PgStore,
        provider: Arc<dyn SuggestionProvider>,
        cache: Option<Arc<dyn SuggestionCache>>,
        metrics: Metrics,
        broker: impl Into<crate::amqp::Endpoint>,
        topology: Topology,
    ) -> Self {
        Self {
            jobs: SuggestionJobs::new(store, provider, cache),
            metrics,
            broker: broker.into(),
            topology,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
        }
    }

    /// The worker with a provider that answers when the first one fails (the offline one,
    /// with `AI_OFFLINE_FALLBACK`).
    #[must_use]
    pub fn with_fallback(mut self, fallback: Arc<dyn SuggestionProvider>) -> Self {
        self.jobs = self.jobs.with_fallback(fallback);
        self
    }

    /// The job in a message body, or why the message can never be handled (a poison
    /// message: not an outbox event, or one without `request_id`/`list_id`).
    fn parse(body: &[u8]) -> std::result::Result<SuggestionJob, String> {
        let event = serde_json::from_slice::<Event>(body)
            .map_err(|e| format!("not an outbox event: {e}"))?;
        SuggestionJob::from_event(&event).ok_or_else(|| {
            format!(
                "event {} is not a suggestion request (no request_id/list_id)",
                event.id
            )
        })
    }

    fn job(body: &[u8]) -> Option<SuggestionJob> {
        Self::parse(body).ok()
    }

    fn count(&self, handled: Handled) {
        match handled {
            Handled::Done => self.metrics.ai_jobs.with_label_values(&["success"]).inc(),
            Handled::Failed => self.metrics.ai_jobs.with_label_values(&["failure"]).inc(),
            Handled::Duplicate | Handled::Ignored => {}
        }
    }

    /// Handles one message body and counts the outcome. An `Err` means "try again later".
    pub async fn handle(&self, body: &[u8]) -> Result<Handled> {
        let Some(job) = Self::job(body) else {
            return Ok(Handled::Ignored);
        };
        let handled = self.jobs.handle(job).await?;
        self.count(handled);
        Ok(handled)
    }

    /// Gives up on a message after `attempts`: the request is marked failed (a terminal
    /// state the client sees) and counted as a failed AI job.
    pub async fn give_up(&self, body: &[u8], attempts: u32, error: &Error) -> Result<Handled> {
        let Some(job) = Self::job(body) else {
            return Ok(Handled::Ignored);
        };
        let reason = format!("gave up after {attempts} attempts: {error}");
        let handled = self.jobs.give_up(job, &reason).await?;
        self.count(handled);
        Ok(handled)
    }

    /// Consumes until `shutdown` turns true, reconnecting with backoff.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut failures: i32 = 0;
        while !*shutdown.borrow() {
            match self.consume(&mut shutdown).await {
                Ok(()) => failures = 0,
                Err(err) => {
                    let delay = outbox::backoff(failures, Duration::from_secs(10));
                    failures = failures.saturating_add(1);
                    tracing::warn!(error = %err, retry_in_ms = delay.as_millis() as u64, "AI worker lost RabbitMQ; reconnecting");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        _ = shutdown.changed() => {}
                    }
                }
            }
        }
    }

    /// One connection's life: connects, declares, consumes until shutdown or an error; the
    /// connection is closed either way (a broken one must not linger).
    async fn consume(&self, shutdown: &mut watch::Receiver<bool>) -> Result<()> {
        let conn = crate::amqp::connect_to(&self.broker, Duration::from_secs(3)).await?;
        let result = self.consume_on(&conn, shutdown).await;
        let reason = if result.is_ok() {
            "shutting down"
        } else {
            "reconnecting"
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), conn.close(200, reason.into())).await;
        result
    }

    async fn consume_on(
        &self,
        conn: &lapin::Connection,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<()> {
        let channel = conn
            .create_channel()
            .await
            .map_err(Error::amqp("opening a channel"))?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(Error::amqp("enabling publisher confirms"))?;
        crate::amqp::declare(&channel, &self.topology).await?;
        channel
            .basic_qos(8, BasicQosOptions::default())
            .await
            .map_err(Error::amqp("setting prefetch"))?;
        let mut consumer = channel
            .basic_consume(
                self.topology.ai_queue.as_str().into(),
                format!("ai-worker-{}", Uuid::new_v4()).as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(Error::amqp("consuming"))?;
        tracing::info!(queue = %self.topology.ai_queue, "AI worker consuming");
        // The queue's depth, sampled on a channel of its own so that a long job never delays
        // it; it stops with this connection (the guard aborts it when this returns).
        let sampling = conn
            .create_channel()
            .await
            .map_err(Error::amqp("opening the sampling channel"))?;
        let _sampler = AbortOnDrop(tokio::spawn(super::backlog::sample_queue(
            sampling,
            self.topology.ai_queue.clone(),
            self.metrics.clone(),
        )));
        loop {
            let delivery = tokio::select! {
                d = consumer.next() => d,
                _ = shutdown.changed() => return Ok(()),
            };
            let Some(delivery) = delivery else {
                return Err(Error::Provider {
                    provider: "rabbitmq",
                    reason: "the consumer was cancelled (queue deleted or channel closed)"
                        .to_owned(),
                });
            };
            let delivery = delivery.map_err(Error::amqp("receiving"))?;
            // Each delivery is a span of the trace its `traceparent` header names (the
            // request that asked for the suggestion), retries included.
            let span = tracing::info_span!(
                "ai.suggestion",
                otel.kind = "consumer",
                messaging.system = "rabbitmq",
                messaging.destination.name = %self.topology.ai_queue,
                attempt = attempts_of(&delivery.properties).saturating_add(1),
            );
            listacompra_telemetry::propagation::continue_from(&span, |name| {
                header_string(&delivery.properties, name)
            });
            // A message no attempt can handle goes to the dead-letter queue at once (kept for
            // a look, counted), not acked and dropped.
            if let Err(why) = Self::parse(&delivery.data) {
                self.poison(&channel, delivery, &why)
                    .instrument(span)
                    .await?;
                continue;
            }
            match self.handle(&delivery.data).instrument(span.clone()).await {
                Ok(_) => delivery
                    .ack(BasicAckOptions::default())
                    .await
                    .map(drop)
                    .map_err(Error::amqp("acking"))?,
                Err(err) => {
                    self.failed(&channel, delivery, err, shutdown)
                        .instrument(span)
                        .await?;
                }
            }
        }
    }

    /// Copies `delivery` to the AI dead-letter queue with its attempts and `why`, and counts
    /// it in the dead-letter metric.
    async fn dead_letter(
        &self,
        channel: &Channel,
        delivery: &Delivery,
        attempts: u32,
        why: &str,
    ) -> Result<()> {
        let props = with_attempts(&delivery.properties, attempts, Some(why));
        crate::amqp::publish_to(
            channel,
            "",
            &self.topology.ai_dead_letters,
            &delivery.data,
            props,
            message_id(delivery),
        )
        .await?;
        self.metrics.dead_letters.with_label_values(&["ai"]).inc();
        Ok(())
    }

    /// A delivery that no attempt can handle (see [`Self::parse`]): dead-lettered with
    /// `why`, counted in the dead-letter metric, then acked. No request is marked failed (none
    /// can be named), so it is not an AI job.
    async fn poison(&self, channel: &Channel, delivery: Delivery, why: &str) -> Result<()> {
        let attempts = attempts_of(&delivery.properties).saturating_add(1);
        let id = message_id(&delivery);
        tracing::error!(event_id = %id, error = %why, queue = %self.topology.ai_dead_letters, "AI worker cannot read a message; dead-lettering it");
        self.dead_letter(channel, &delivery, attempts, why).await?;
        delivery
            .ack(BasicAckOptions::default())
            .await
            .map(drop)
            .map_err(Error::amqp("acking"))
    }

    /// A delivery whose handling failed: requeued as it is when the database is unreachable
    /// (not the message's fault, so no attempt is counted), else retried with one more
    /// attempt counted, or dead-lettered once the attempts reach the cap.
    async fn failed(
        &self,
        channel: &Channel,
        delivery: Delivery,
        err: Error,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<()> {
        let attempts = attempts_of(&delivery.properties).saturating_add(1);
        if err.is_database_unreachable() {
            tracing::warn!(error = %err, "AI job waits for the database; requeueing");
            return requeue_later(&delivery).await;
        }
        let id = message_id(&delivery);
        if attempts >= self.max_attempts {
            tracing::error!(event_id = %id, attempts, error = %err, queue = %self.topology.ai_dead_letters, "AI job keeps failing; dead-lettering it");
            self.dead_letter(channel, &delivery, attempts, &err.to_string())
                .await?;
            match self.give_up(&delivery.data, attempts, &err).await {
                Ok(_) => {}
                Err(mark) => {
                    // The copy is in the dead-letter queue; the original comes back with the
                    // same count and is dead-lettered again once the request can be marked.
                    tracing::warn!(error = %mark, "could not mark the request failed; requeueing");
                    return requeue_later(&delivery).await;
                }
            }
        } else {
            let pause = outbox::backoff(
                i32::try_from(attempts).unwrap_or(i32::MAX) - 1,
                MAX_RETRY_PAUSE,
            );
            tracing::warn!(event_id = %id, attempts, max_attempts = self.max_attempts, retry_in_ms = pause.as_millis() as u64, error = %err, "AI job failed; will retry");
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                // Neither acked nor republished: the broker redelivers it, same count.
                _ = shutdown.changed() => return Ok(()),
            }
            let props = with_attempts(&delivery.properties, attempts, None);
            crate::amqp::publish_to(
                channel,
                "",
                &self.topology.ai_queue,
                &delivery.data,
                props,
                id,
            )
            .await?;
        }
        delivery
            .ack(BasicAckOptions::default())
            .await
            .map(drop)
            .map_err(Error::amqp("acking"))
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn message_id(delivery: &Delivery) -> Uuid {
    delivery
        .properties
        .message_id()
        .as_ref()
        .and_then(|id| Uuid::parse_str(id.as_str()).ok())
        .unwrap_or_default()
}

/// Puts `delivery` back on its queue after a pause (for a cause that is not the message's:
/// the database unreachable, or the failed request not yet marked).
async fn requeue_later(delivery: &Delivery) -> Result<()> {
    tokio::time::sleep(Duration::from_millis(500)).await;
    delivery
        .nack(BasicNackOptions {
            requeue: true,
            ..BasicNackOptions::default()
        })
        .await
        .map(drop)
        .map_err(Error::amqp("nacking"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_are_read_from_the_header_whatever_its_integer_type() {
        assert_eq!(attempts_of(&BasicProperties::default()), 0);
        let props = with_attempts(&BasicProperties::default(), 3, Some("boom"));
        assert_eq!(attempts_of(&props), 3);
        let mut headers = FieldTable::default();
        headers.insert(ATTEMPTS_HEADER.into(), AMQPValue::LongLongInt(7));
        assert_eq!(
            attempts_of(&BasicProperties::default().with_headers(headers)),
            7
        );
        let mut headers = FieldTable::default();
        headers.insert(ATTEMPTS_HEADER.into(), AMQPValue::LongInt(-2));
        assert_eq!(
            attempts_of(&BasicProperties::default().with_headers(headers)),
            0
        );
    }
}
