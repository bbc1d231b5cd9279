//! How far behind the AI worker is: the messages waiting in its queue (the broker's count)
//! and the age of the oldest suggestion request still pending (the database's, so it counts
//! the whole way a request takes: outbox, broker and worker).

use std::time::Duration;

use lapin::Channel;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use sqlx::PgPool;
use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::{Error, Result};

/// How often a worker samples them.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// Messages ready in `queue`, not yet delivered to a consumer. A passive declare: it never
/// creates the queue, and fails (closing the channel) when the queue does not exist.
pub async fn queue_messages(channel: &Channel, queue: &str) -> Result<u32> {
    let declared = channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(Error::amqp("counting the messages of the AI queue"))?;
    Ok(declared.message_count())
}

/// Longest a sample may take.
const SAMPLE_TIMEOUT: Duration = Duration::from_secs(2);

/// Samples [`queue_messages`] into its gauge every [`SAMPLE_EVERY`] on `channel` (a channel
/// of its own on the worker's connection) until the channel fails; the gauge then keeps the
/// last value seen while connected.
pub async fn sample_queue(channel: Channel, queue: String, metrics: Metrics) {
    let mut every = tokio::time::interval(SAMPLE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        match tokio::time::timeout(SAMPLE_TIMEOUT, queue_messages(&channel, &queue)).await {
            Ok(Ok(waiting)) => metrics.ai_queue_messages.set(waiting.into()),
            Ok(Err(err)) => {
                tracing::debug!(error = %err, "stopped sampling the AI queue");
                return;
            }
            Err(_) => tracing::debug!("sampling the AI queue timed out"),
        }
    }
}

/// Whole seconds since the oldest pending suggestion request was made; 0 when none is
/// pending (revision 12's partial index makes this one index lookup).
pub async fn oldest_pending_seconds(pool: &PgPool) -> Result<i64> {
    sqlx::query_scalar(
        "SELECT COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::bigint \
         FROM suggestion_requests WHERE status = 'pending'",
    )
    .fetch_one(pool)
    .await
    .map_err(Error::db("reading the oldest pending suggestion request"))
}

/// Samples what is waiting into its gauges every [`SAMPLE_EVERY`] until shutdown: the oldest
/// pending AI request ([`oldest_pending_seconds`]) and the outbox's backlog and dead events.
/// Every process runs it (the API pods too): they are database reads, so the alerts on them
/// keep firing while no worker runs (scaled to 0, crash-looping), and it keeps reporting
/// while the broker is unreachable, which is when requests age. The relay also sets the
/// outbox gauges after each batch.
pub async fn watch(pool: PgPool, metrics: Metrics, mut shutdown: watch::Receiver<bool>) {
    let mut every = tokio::time::interval(SAMPLE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            return;
        }
        match oldest_pending_seconds(&pool).await {
            Ok(age) => metrics.ai_oldest_pending.set(age),
            Err(err) => {
                tracing::debug!(error = %err, "could not sample the oldest pending AI request")
            }
        }
        if let Ok(n) = crate::outbox::backlog(&pool).await {
            metrics.outbox_backlog.set(n);
        }
        if let Ok(n) = crate::outbox::dead(&pool).await {
            metrics.outbox_dead.set(n);
        }
    }
}
