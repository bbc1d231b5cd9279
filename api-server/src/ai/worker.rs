//! The AI worker: consumes suggestion requests from RabbitMQ and hands them to the
//! [`SuggestionJobs`] use case; acks what was handled, requeues what must be retried.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::types::FieldTable;
use tokio::sync::watch;
use uuid::Uuid;

use crate::amqp::Topology;
use crate::domain::{Event, SuggestionJob};
use crate::metrics::Metrics;
use crate::outbox;
use crate::ports::{SuggestionCache, SuggestionProvider};
use crate::store::PgStore;
use crate::usecases::{Handled, SuggestionJobs};
use crate::{Error, Result};

/// The consumer of suggestion requests.
#[derive(Debug, Clone)]
pub struct Worker {
    jobs: SuggestionJobs<PgStore>,
    metrics: Metrics,
    url: String,
    topology: Topology,
}

impl Worker {
    /// A worker.
    pub fn new(
        store: PgStore,
        provider: Arc<dyn SuggestionProvider>,
        cache: Option<Arc<dyn SuggestionCache>>,
        metrics: Metrics,
        url: String,
        topology: Topology,
    ) -> Self {
        Self {
            jobs: SuggestionJobs::new(store, provider, cache),
            metrics,
            url,
            topology,
        }
    }

    /// Handles one message body and counts the outcome. An `Err` means "try again later"
    /// (the delivery is requeued).
    pub async fn handle(&self, body: &[u8]) -> Result<Handled> {
        let Ok(event) = serde_json::from_slice::<Event>(body) else {
            tracing::warn!("dropping a message that is not an outbox event");
            return Ok(Handled::Ignored);
        };
        let Some(job) = SuggestionJob::from_event(&event) else {
            tracing::warn!(event_id = %event.id, "dropping a suggestion event without request_id/list_id");
            return Ok(Handled::Ignored);
        };
        let handled = self.jobs.handle(job).await?;
        match handled {
            Handled::Done => self.metrics.ai_jobs.with_label_values(&["success"]).inc(),
            Handled::Failed => self.metrics.ai_jobs.with_label_values(&["failure"]).inc(),
            Handled::Duplicate | Handled::Ignored => {}
        }
        Ok(handled)
    }

    /// Consumes until `shutdown` turns true, reconnecting with backoff.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut failures: i32 = 0;
        while !*shutdown.borrow() {
            match self.consume(&mut shutdown).await {
                Ok(()) => failures = 0,
                Err(err) => {
                    failures += 1;
                    let delay = outbox::backoff(failures, Duration::from_secs(10));
                    tracing::warn!(error = %err, retry_in_ms = delay.as_millis() as u64, "AI worker lost RabbitMQ");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        _ = shutdown.changed() => {}
                    }
                }
            }
        }
    }

    async fn consume(&self, shutdown: &mut watch::Receiver<bool>) -> Result<()> {
        let conn = crate::amqp::connect(&self.url, Duration::from_secs(3)).await?;
        let channel = conn
            .create_channel()
            .await
            .map_err(Error::amqp("opening a channel"))?;
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
        loop {
            let delivery = tokio::select! {
                d = consumer.next() => d,
                _ = shutdown.changed() => {
                    let _ = conn.close(200, "shutting down".into()).await;
                    return Ok(());
                }
            };
            let Some(delivery) = delivery else {
                return Err(Error::Provider {
                    provider: "rabbitmq",
                    reason: "the consumer was cancelled".to_owned(),
                });
            };
            let delivery = delivery.map_err(Error::amqp("receiving"))?;
            match self.handle(&delivery.data).await {
                Ok(_) => {
                    delivery
                        .ack(BasicAckOptions::default())
                        .await
                        .map_err(Error::amqp("acking"))?;
                }
                Err(err) => {
                    tracing::warn!(error = %err, "AI job could not be handled now; requeueing");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    delivery
                        .nack(BasicNackOptions {
                            requeue: true,
                            ..BasicNackOptions::default()
                        })
                        .await
                        .map_err(Error::amqp("nacking"))?;
                }
            }
        }
    }
}
