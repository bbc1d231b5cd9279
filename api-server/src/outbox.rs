//! The transactional outbox: events are written with the change that caused them, and a
//! relay publishes them to RabbitMQ with publisher confirms, retrying with backoff.
//! Delivery is at-least-once; consumers deduplicate by event id ([`first_delivery`]).
//!
//! An event whose publish fails [`Relay::max_attempts`] times (`OUTBOX_MAX_ATTEMPTS`) is
//! moved aside: it stays unpublished with `next_attempt_at = 'infinity'` (never due again,
//! not in the backlog; [`dead`] counts them) and `last_error` saying why, so it cannot hold
//! the relay up. So is an event whose stored `created_at` the relay cannot hold (a hand edit:
//! `infinity`, a year out of range), which would otherwise fail every batch. An operator
//! sends such events again (the time corrected first) with
//! `UPDATE outbox_events SET attempts = 0, next_attempt_at = now() WHERE next_attempt_at = 'infinity'`.
//!
//! Traces: an event keeps the trace context of the request that wrote it (under
//! [`TRACE_KEY`] in its stored payload); the relay publishes it in a span of that trace and
//! moves the context to the message's AMQP headers (`traceparent`), so one trace runs from
//! the request through the relay to the consumer. During a rollout or a rollback a relay of a
//! version before traces may publish such a row with the key still in the body; consumers
//! ignore unknown payload keys (ours do), so nothing breaks.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use lapin::options::ConfirmSelectOptions;
use lapin::{Channel, Connection};
use sqlx::{PgPool, Postgres, Row as _, Transaction};
use tokio::sync::watch;
use tracing::Instrument as _;
use uuid::Uuid;

use crate::metrics::Metrics;
use crate::store::PgStore;
use crate::{Error, Result};

pub use crate::domain::{Event, SUGGESTION_REQUESTED};

/// The key of a stored payload that holds the trace context of the request that wrote the
/// event. Kept in the payload rather than in a column of its own so that every schema
/// revision a running version may meet can store it; the relay takes it out before publishing.
pub const TRACE_KEY: &str = "_trace";

/// `payload` with the trace context of the current span under [`TRACE_KEY`]; unchanged when
/// the span is not traced or the payload is not a JSON object.
pub fn with_trace(mut payload: serde_json::Value) -> serde_json::Value {
    let context = listacompra_telemetry::propagation::headers_of(&tracing::Span::current());
    if let (false, Some(object)) = (context.is_empty(), payload.as_object_mut()) {
        object.insert(TRACE_KEY.to_owned(), serde_json::json!(context));
    }
    payload
}

/// Takes the trace context out of a stored payload (empty when it has none).
pub fn take_trace(payload: &mut serde_json::Value) -> HashMap<String, String> {
    payload
        .as_object_mut()
        .and_then(|o| o.remove(TRACE_KEY))
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default()
}

/// Writes an event in the caller's transaction, with the caller's trace context.
pub async fn enqueue(
    tx: &mut Transaction<'static, Postgres>,
    event_type: &str,
    aggregate_id: Uuid,
    payload: serde_json::Value,
) -> Result<Uuid> {
    let payload = with_trace(payload);
    let id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO outbox_events (id, event_type, aggregate_id, payload) VALUES ($1, $2, $3, $4)",
    )
    .bind(id)
    .bind(event_type)
    .bind(aggregate_id)
    .bind(payload)
    .execute(&mut **tx)
    .await
    .map_err(Error::db("writing an outbox event"))?;
    Ok(id)
}

/// Records that `consumer` handles `event_id` now; false when it was handled before (a
/// redelivery). Call it in the transaction of the consumer's effect.
pub async fn first_delivery(
    tx: &mut Transaction<'static, Postgres>,
    consumer: &str,
    event_id: Uuid,
) -> Result<bool> {
    let done = sqlx::query(
        "INSERT INTO processed_events (consumer, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind(consumer)
    .bind(event_id)
    .execute(&mut **tx)
    .await
    .map_err(Error::db("recording a processed event"))?;
    Ok(done.rows_affected() == 1)
}

/// Default of `OUTBOX_MAX_ATTEMPTS`.
pub const DEFAULT_MAX_ATTEMPTS: i32 = 5;

/// An unpublished event that is due, as the relay claims it.
#[derive(Debug)]
pub struct Due {
    /// The event's id (the AMQP message id).
    pub id: Uuid,
    /// Its type (the routing key).
    pub event_type: String,
    /// The aggregate it is about.
    pub aggregate_id: Uuid,
    /// Its stored payload, with the trace context under [`TRACE_KEY`].
    pub payload: serde_json::Value,
    /// When it was written, or why the stored time cannot be read (a hand edit: `infinity`,
    /// or a year past chrono's 262142): such an event is moved aside unpublished, its message
    /// could not say when it happened.
    pub created_at: std::result::Result<DateTime<Utc>, String>,
    /// Failed publishes so far.
    pub attempts: i32,
}

/// Locks up to `limit` due events in `tx` (skipping those another relay holds), the longest
/// due first: a retried event goes behind the events that were due before its retry, so one
/// that keeps failing cannot hold the others back until it is moved aside (a reconnect slower
/// than its backoff would otherwise put it first in every batch). The order is the pending
/// index's (`outbox_events_pending_idx`). Events are not published in write order anyway once
/// one is retried; consumers must not rely on it.
pub async fn claim_due(tx: &mut Transaction<'static, Postgres>, limit: i64) -> Result<Vec<Due>> {
    let rows = sqlx::query(
        "SELECT id, event_type, aggregate_id, payload, created_at, attempts FROM outbox_events \
         WHERE published_at IS NULL AND next_attempt_at <= clock_timestamp() \
         ORDER BY next_attempt_at, created_at LIMIT $1 FOR UPDATE SKIP LOCKED",
    )
    .bind(limit)
    .fetch_all(&mut **tx)
    .await
    .map_err(Error::db("reading due outbox events"))?;
    rows.iter()
        .map(|row| {
            let get = Error::db;
            Ok(Due {
                id: row.try_get("id").map_err(get("an outbox event's id"))?,
                event_type: row
                    .try_get("event_type")
                    .map_err(get("an outbox event's type"))?,
                aggregate_id: row
                    .try_get("aggregate_id")
                    .map_err(get("an outbox event's aggregate"))?,
                payload: row
                    .try_get("payload")
                    .map_err(get("an outbox event's payload"))?,
                created_at: crate::store::time(row, "created_at", "an outbox event's time")
                    .map_err(|e| e.to_string()),
                attempts: row
                    .try_get("attempts")
                    .map_err(get("an outbox event's attempts"))?,
            })
        })
        .collect()
}

/// Events not yet published (and not moved aside).
pub async fn backlog(pool: &PgPool) -> Result<i64> {
    sqlx::query_scalar(
        "SELECT count(*) FROM outbox_events \
         WHERE published_at IS NULL AND next_attempt_at <> 'infinity'",
    )
    .fetch_one(pool)
    .await
    .map_err(Error::db("counting the outbox backlog"))
}

/// Events moved aside after [`Relay::max_attempts`] failed publishes.
pub async fn dead(pool: &PgPool) -> Result<i64> {
    sqlx::query_scalar(
        "SELECT count(*) FROM outbox_events \
         WHERE published_at IS NULL AND next_attempt_at = 'infinity'",
    )
    .fetch_one(pool)
    .await
    .map_err(Error::db("counting dead outbox events"))
}

/// Deletes what no longer serves: outbox events published more than `published` ago, and
/// consumer deduplication records older than `dedup_window` (longer than any redelivery).
/// Returns how many outbox rows and how many deduplication rows were removed.
pub async fn purge(
    pool: &PgPool,
    published: Duration,
    dedup_window: Duration,
) -> Result<(u64, u64)> {
    let seconds = |d: Duration| f64::from(u32::try_from(d.as_secs()).unwrap_or(u32::MAX));
    let outbox = sqlx::query(
        "DELETE FROM outbox_events \
         WHERE published_at IS NOT NULL AND published_at < clock_timestamp() - make_interval(secs => $1)",
    )
    .bind(seconds(published))
    .execute(pool)
    .await
    .map_err(Error::db("purging published outbox events"))?
    .rows_affected();
    let processed = sqlx::query(
        "DELETE FROM processed_events WHERE processed_at < clock_timestamp() - make_interval(secs => $1)",
    )
    .bind(seconds(dedup_window))
    .execute(pool)
    .await
    .map_err(Error::db("purging deduplication records"))?
    .rows_affected();
    Ok((outbox, processed))
}

/// Delay before the next attempt after `attempts` failed ones: 0.5 s doubling, capped.
pub fn backoff(attempts: i32, cap: Duration) -> Duration {
    let exp = u32::try_from(attempts.clamp(0, 16)).unwrap_or(16);
    Duration::from_millis(500u64.saturating_mul(1u64 << exp)).min(cap)
}

/// Publishes pending events.
#[derive(Debug, Clone)]
pub struct Relay {
    store: PgStore,
    broker: crate::amqp::Endpoint,
    topology: crate::amqp::Topology,
    metrics: Metrics,
    /// Pause between polls when nothing is due.
    pub poll: Duration,
    /// Events per transaction.
    pub batch: i64,
    /// Longest backoff between attempts of one event.
    pub max_backoff: Duration,
    /// Failed publishes of one event before it is moved aside (`OUTBOX_MAX_ATTEMPTS`).
    pub max_attempts: i32,
    /// How long published events are kept before [`purge`] removes them.
    pub retention: Duration,
    /// How long consumer deduplication records are kept.
    pub dedup_window: Duration,
    /// How often the relay purges.
    pub purge_every: Duration,
}

struct Link {
    conn: Connection,
    channel: Channel,
}

impl Link {
    /// Usable: neither the connection nor the channel was closed (the broker closes a
    /// channel on a refused publish, e.g. to an exchange that no longer exists).
    fn usable(&self) -> bool {
        self.conn.status().connected() && self.channel.status().connected()
    }
}

/// Closes a link that is no longer used, explicitly and in the background, bounded (a dead
/// peer must not block the relay).
fn discard(link: &mut Option<Link>) {
    if let Some(old) = link.take() {
        tokio::spawn(async move {
            let _ = tokio::time::timeout(
                Duration::from_secs(2),
                old.conn.close(200, "reconnecting".into()),
            )
            .await;
        });
    }
}

impl Relay {
    /// A relay from the outbox in `store` to the broker at `broker` (a URL or an
    /// [`crate::amqp::Endpoint`]). Its transactions wait for a connection as the store's
    /// do, in turn with the store's reads (`store::handoff`): give it the server's store.
    pub fn new(
        store: PgStore,
        broker: impl Into<crate::amqp::Endpoint>,
        topology: crate::amqp::Topology,
        metrics: Metrics,
    ) -> Self {
        Self {
            store,
            broker: broker.into(),
            topology,
            metrics,
            poll: Duration::from_millis(200),
            batch: 100,
            max_backoff: Duration::from_secs(30),
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            retention: Duration::from_secs(24 * 3600),
            dedup_window: Duration::from_secs(7 * 24 * 3600),
            purge_every: Duration::from_secs(600),
        }
    }

    async fn link(&self) -> Result<Link> {
        let conn = crate::amqp::connect_to(&self.broker, Duration::from_secs(3)).await?;
        let channel = conn
            .create_channel()
            .await
            .map_err(Error::amqp("opening a channel"))?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(Error::amqp("enabling publisher confirms"))?;
        crate::amqp::declare(&channel, &self.topology).await?;
        Ok(Link { conn, channel })
    }

    /// Runs until `shutdown` turns true.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut link: Option<Link> = None;
        let mut last_purge: Option<tokio::time::Instant> = None;
        let mut failures: i32 = 0;
        loop {
            if *shutdown.borrow() {
                break;
            }
            if last_purge.is_none_or(|at| at.elapsed() >= self.purge_every) {
                match purge(self.store.pool(), self.retention, self.dedup_window).await {
                    Ok((events, records)) => {
                        tracing::debug!(events, records, "purged the outbox");
                        last_purge = Some(tokio::time::Instant::now());
                    }
                    Err(err) => tracing::warn!(error = %err, "outbox purge failed"),
                }
            }
            let pause = match self.step(&mut link).await {
                Ok(0) => {
                    failures = 0;
                    Some(self.poll)
                }
                Ok(_) => {
                    failures = 0;
                    None
                }
                Err(err) => {
                    // Broker or database unreachable: back off instead of retrying every poll.
                    let pause = backoff(failures, self.max_backoff).max(self.poll);
                    failures = failures.saturating_add(1);
                    tracing::warn!(error = %err, retry_in_ms = pause.as_millis() as u64, "outbox relay step failed");
                    Some(pause)
                }
            };
            if let Ok(n) = backlog(self.store.pool()).await {
                self.metrics.outbox_backlog.set(n);
            }
            if let Ok(n) = dead(self.store.pool()).await {
                self.metrics.outbox_dead.set(n);
            }
            if let Some(pause) = pause {
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
        if let Some(link) = link {
            let _ = link.conn.close(200, "shutting down".into()).await;
        }
    }

    /// Publishes `event` in a span of the trace of the request that wrote it (`trace`).
    async fn publish(
        &self,
        channel: &Channel,
        event: &Event,
        trace: &HashMap<String, String>,
    ) -> Result<()> {
        let span = tracing::info_span!(
            "outbox.publish",
            otel.name = %format!("publish {}", event.event_type),
            otel.kind = "producer",
            event_id = %event.id,
            messaging.system = "rabbitmq",
            messaging.destination.name = %self.topology.exchange,
        );
        listacompra_telemetry::propagation::continue_from(&span, |k| trace.get(k).cloned());
        let headers = listacompra_telemetry::propagation::headers_of(&span);
        crate::amqp::publish(channel, &self.topology.exchange, event, &headers)
            .instrument(span)
            .await
    }

    /// Moves the event `id` aside in `tx`: never due again (`next_attempt_at = infinity`),
    /// `why` in `last_error`, `attempts` recorded; counted as a dead letter. A suggestion
    /// request whose event can never reach the worker ends failed in the same transaction:
    /// its user sees a terminal state instead of waiting for ever (and the oldest pending
    /// request's age stays true), and it counts as a failed AI job in the success KPI once
    /// the batch is committed. Returns how many requests it ended so (0 or 1).
    async fn move_aside(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        id: Uuid,
        attempts: i32,
        why: &str,
        event_type: &str,
        payload: &serde_json::Value,
    ) -> Result<u64> {
        sqlx::query(
            "UPDATE outbox_events SET attempts = $3, last_error = $2, \
             next_attempt_at = 'infinity' WHERE id = $1",
        )
        .bind(id)
        .bind(why)
        .bind(attempts)
        .execute(&mut **tx)
        .await
        .map_err(Error::db("moving an outbox event aside"))?;
        let job = (event_type == SUGGESTION_REQUESTED)
            .then(|| crate::domain::SuggestionJob::from_payload(id, payload))
            .flatten();
        let ended = match job {
            Some(job) => {
                let why = "the request could not be queued for the AI worker; ask again";
                crate::store::finish_suggestion_request(tx, job.request_id, None, &Err(why.into()))
                    .await?
            }
            None => false,
        };
        self.metrics
            .dead_letters
            .with_label_values(&["outbox"])
            .inc();
        tracing::error!(event_id = %id, attempts, error = %why, "outbox event cannot be published; moved aside (next_attempt_at = infinity)");
        Ok(u64::from(ended))
    }

    /// One batch: publishes the due events; returns how many were confirmed.
    async fn step(&self, link: &mut Option<Link>) -> Result<usize> {
        let mut tx = self.store.transaction().await?;
        let rows = claim_due(&mut tx, self.batch).await?;
        if rows.is_empty() {
            return Ok(0);
        }
        if link.as_ref().is_none_or(|l| !l.usable()) {
            discard(link);
            match self.link().await {
                Ok(l) => *link = Some(l),
                Err(err) => {
                    // Waiting for an unreachable broker is not a publish attempt: the events
                    // keep their attempt count and schedule, and no retry is counted (a broker
                    // restart with a backlog is not a KPI breach). Only why they wait is
                    // recorded; the relay backs off (see `run`).
                    let ids: Vec<Uuid> = rows.iter().map(|row| row.id).collect();
                    sqlx::query("UPDATE outbox_events SET last_error = $2 WHERE id = ANY($1)")
                        .bind(&ids)
                        .bind(err.to_string())
                        .execute(&mut *tx)
                        .await
                        .map_err(Error::db("recording why outbox events wait"))?;
                    tx.commit()
                        .await
                        .map_err(Error::db("committing the outbox batch"))?;
                    return Err(err);
                }
            }
        }
        let Some(channel) = link.as_ref().map(|l| l.channel.clone()) else {
            return Ok(0);
        };
        let mut published = 0;
        // Suggestion requests this batch ends failed: AI jobs that failed, counted once the
        // batch is committed.
        let mut failed_jobs = 0;
        for Due {
            id,
            event_type,
            aggregate_id,
            mut payload,
            created_at,
            attempts,
        } in rows
        {
            let trace = take_trace(&mut payload);
            let created_at = match created_at {
                Ok(created_at) => created_at,
                Err(why) => {
                    // Nothing was sent: no attempt is counted, the link stays, and the rest
                    // of the batch goes on.
                    let why = format!(
                        "created_at cannot be read ({why}); correct it, then send it again"
                    );
                    failed_jobs += self
                        .move_aside(&mut tx, id, attempts, &why, &event_type, &payload)
                        .await?;
                    continue;
                }
            };
            let event = Event {
                id,
                event_type,
                aggregate_id,
                payload,
                created_at,
            };
            let outcome = self.publish(&channel, &event, &trace).await;
            let Event {
                event_type,
                payload,
                ..
            } = event;
            match outcome {
                Ok(()) => {
                    sqlx::query(
                        "UPDATE outbox_events SET published_at = clock_timestamp(), \
                         attempts = attempts + 1, last_error = NULL WHERE id = $1",
                    )
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(Error::db("marking an event sent"))?;
                    let waited = (Utc::now() - created_at).num_milliseconds().max(0);
                    #[allow(clippy::cast_precision_loss)]
                    self.metrics.outbox_latency.observe(waited as f64 / 1000.0);
                    published += 1;
                }
                Err(err)
                    if matches!(err, Error::Unpublishable { .. })
                        || attempts.saturating_add(1) >= self.max_attempts =>
                {
                    // The last attempt failed, or no attempt can succeed: moved aside, never
                    // due again. Not a retry.
                    let attempts = attempts.saturating_add(1);
                    let why = format!("gave up after {attempts} attempts: {err}");
                    failed_jobs += self
                        .move_aside(&mut tx, id, attempts, &why, &event_type, &payload)
                        .await?;
                    discard(link);
                    break;
                }
                Err(err) => {
                    // A real publish of this event failed: one retry.
                    let delay = backoff(attempts, self.max_backoff);
                    sqlx::query(
                        "UPDATE outbox_events SET attempts = attempts + 1, last_error = $2, \
                         next_attempt_at = clock_timestamp() + make_interval(secs => $3) WHERE id = $1",
                    )
                    .bind(id)
                    .bind(err.to_string())
                    .bind(delay.as_secs_f64())
                    .execute(&mut *tx)
                    .await
                    .map_err(Error::db("recording a failed publish"))?;
                    self.metrics.outbox_retries.inc();
                    tracing::warn!(event_id = %id, attempts = attempts + 1, retry_in_ms = delay.as_millis() as u64, error = %err, "outbox publish failed; will retry");
                    // The link is suspect: the rest of the batch is not attempted (so not
                    // counted); the next step reconnects first.
                    discard(link);
                    break;
                }
            }
        }
        tx.commit()
            .await
            .map_err(Error::db("committing the outbox batch"))?;
        // In the AI success KPI like a job the worker gave up on.
        self.metrics
            .ai_jobs
            .with_label_values(&["failure"])
            .inc_by(failed_jobs);
        Ok(published)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trace_context_travels_with_the_row_and_never_in_the_body() {
        // Outside a traced span nothing is added.
        let payload = serde_json::json!({ "list_id": "l" });
        assert_eq!(with_trace(payload.clone()), payload);
        // The relay takes the context out of the stored payload.
        let mut stored = serde_json::json!({
            "list_id": "l",
            TRACE_KEY: { "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" },
        });
        let trace = take_trace(&mut stored);
        assert_eq!(stored, payload);
        assert_eq!(
            trace.get("traceparent").map(String::as_str),
            Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        );
        // Rows written before traces, and odd payloads, publish unchanged.
        let mut old = payload.clone();
        assert!(take_trace(&mut old).is_empty());
        assert_eq!(old, payload);
        let mut odd = serde_json::json!([1, 2]);
        assert!(take_trace(&mut odd).is_empty());
        let mut bad = serde_json::json!({ TRACE_KEY: 7, "a": 1 });
        assert!(take_trace(&mut bad).is_empty());
        assert_eq!(bad, serde_json::json!({ "a": 1 }));
    }

    #[test]
    fn backoff_doubles_from_half_a_second_and_is_capped() {
        let cap = Duration::from_secs(30);
        assert_eq!(backoff(0, cap), Duration::from_millis(500));
        assert_eq!(backoff(1, cap), Duration::from_secs(1));
        assert_eq!(backoff(3, cap), Duration::from_secs(4));
        assert_eq!(backoff(10, cap), cap);
        assert_eq!(backoff(i32::MAX, cap), cap);
        assert_eq!(backoff(-3, cap), Duration::from_millis(500));
    }
}
