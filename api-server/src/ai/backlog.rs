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

/// Samples [`oldest_pending_seconds`] into its gauge every [`SAMPLE_EVERY`] until shutdown.
/// It runs beside the consumer, not in it, so that it keeps reporting while the broker is
/// unreachable, which is when requests age.
pub async fn watch_oldest_pending(
    pool: PgPool,
    metrics: Metrics,
    mut shutdown: watch::Receiver<bool>,
) {
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
    }
}
