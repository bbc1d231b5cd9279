//! The janitor of the object store: sweeps uploads never confirmed, and deletes the objects
//! whose attachments are gone.
//!
//! `object_deletions` is the object store's transactional outbox: a trigger writes the key of
//! every deleted attachment row in the deleting transaction (migration 10), due at once and
//! again at its `final_at` (15 minutes after the upload URL's expiry, plus the time its size
//! takes at 64 KiB/s: an upload started with a URL still valid may land after the first
//! deletion). The janitor
//! leases due keys (so several API pods share the work without holding a transaction across
//! a store call), deletes each object, and removes the key once the store has confirmed. A
//! failure schedules the key again with a doubling backoff; keys are never dropped, so an
//! object store that is down for hours loses nothing and catches up when it is back. A key
//! that fails alone does not hold up the others; [`STORE_DOWN_AFTER`] failures in a row end
//! the round.
//!
//! A database at a revision before attachments has neither table: the janitor waits.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::outbox::backoff;
use crate::ports::ObjectStore;
use crate::store::older_schema;
use crate::{Error, Result};

/// Failed deletions in a row after which the store counts as down for the round.
const STORE_DOWN_AFTER: u32 = 3;

/// The janitor.
#[derive(Debug, Clone)]
pub struct Janitor {
    pool: PgPool,
    objects: Arc<dyn ObjectStore>,
    metrics: Metrics,
    /// Pause between rounds when nothing was due.
    pub poll: Duration,
    /// Keys per round.
    pub batch: i64,
    /// How long a leased key is left to the janitor that took it (a janitor that dies
    /// mid-round gives its keys back after this).
    pub lease: Duration,
    /// Longest pause between two attempts at one key.
    pub max_backoff: Duration,
}

/// What one round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Round {
    /// Unconfirmed uploads swept (their objects are now due for deletion).
    pub swept: u64,
    /// Objects deleted.
    pub deleted: usize,
    /// Deletions that failed (scheduled again).
    pub failed: usize,
}

impl Janitor {
    /// A janitor over the attachments in `pool` and the store `objects`.
    pub fn new(pool: PgPool, objects: Arc<dyn ObjectStore>, metrics: Metrics) -> Self {
        Self {
            pool,
            objects,
            metrics,
            poll: Duration::from_secs(2),
            batch: 50,
            lease: Duration::from_secs(120),
            max_backoff: Duration::from_secs(300),
        }
    }

    /// Runs until `shutdown` turns true.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                break;
            }
            let pause = match self.round().await {
                Ok(round) if round.deleted > 0 && round.failed == 0 => Duration::ZERO,
                Ok(_) => self.poll,
                Err(Error::SchemaTooOld { .. }) => {
                    tracing::debug!("no attachments in this schema revision yet; waiting");
                    self.poll.max(Duration::from_secs(30))
                }
                Err(err) => {
                    tracing::warn!(error = %err, "object janitor round failed");
                    self.poll
                }
            };
            if let Ok(n) = self.pending().await {
                self.metrics.object_deletions_pending.set(n);
            }
            if !pause.is_zero() {
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
    }

    /// One round: sweeps expired uploads, then deletes the due objects.
    pub async fn round(&self) -> Result<Round> {
        let swept = self.sweep().await?;
        let due = self.lease_due().await?;
        let mut round = Round {
            swept,
            ..Round::default()
        };
        let mut due = due.into_iter();
        let mut consecutive = 0;
        while let Some((key, attempts)) = due.next() {
            match self.objects.delete(&key).await {
                Ok(()) => {
                    // Forgotten after the final deletion; before it, due again at final_at.
                    sqlx::query(
                        "WITH gone AS (DELETE FROM object_deletions \
                             WHERE object_key = $1 AND final_at <= now() RETURNING 1) \
                         UPDATE object_deletions SET next_attempt_at = final_at, attempts = 0, \
                             last_error = NULL \
                         WHERE object_key = $1 AND NOT EXISTS (SELECT 1 FROM gone)",
                    )
                    .bind(&key)
                    .execute(&self.pool)
                    .await
                    .map_err(Error::db("recording a deleted object"))?;
                    round.deleted += 1;
                    consecutive = 0;
                }
                Err(err) => {
                    let delay = backoff(attempts, self.max_backoff);
                    sqlx::query(
                        "UPDATE object_deletions SET attempts = attempts + 1, last_error = $2, \
                         next_attempt_at = clock_timestamp() + make_interval(secs => $3) \
                         WHERE object_key = $1",
                    )
                    .bind(&key)
                    .bind(err.to_string())
                    .bind(delay.as_secs_f64())
                    .execute(&self.pool)
                    .await
                    .map_err(Error::db("rescheduling an object deletion"))?;
                    self.metrics.object_deletion_failures.inc();
                    tracing::warn!(object_key = %key, attempts = attempts + 1, retry_in_ms = delay.as_millis() as u64, error = %err, "deleting an object failed; will retry");
                    round.failed += 1;
                    consecutive += 1;
                    if consecutive < STORE_DOWN_AFTER {
                        // One key may fail on its own (a bucket policy on it): the others go on.
                        continue;
                    }
                    // Several in a row: the store is likely down. The rest of the leased keys
                    // are not tried now (no attempt counted) and come back with this one.
                    let rest: Vec<String> = due.map(|(key, _)| key).collect();
                    sqlx::query(
                        "UPDATE object_deletions SET \
                         next_attempt_at = clock_timestamp() + make_interval(secs => $2) \
                         WHERE object_key = ANY($1)",
                    )
                    .bind(&rest)
                    .bind(delay.as_secs_f64())
                    .execute(&self.pool)
                    .await
                    .map_err(Error::db("rescheduling object deletions"))?;
                    break;
                }
            }
        }
        if round.swept > 0 || round.deleted > 0 {
            tracing::info!(
                swept = round.swept,
                deleted = round.deleted,
                "object janitor round"
            );
        }
        Ok(round)
    }

    /// Deletes the attachments whose upload URL has expired unconfirmed (the trigger
    /// schedules their objects' deletion).
    async fn sweep(&self) -> Result<u64> {
        let done = sqlx::query(
            "DELETE FROM attachments WHERE state = 'pending' AND upload_expires_at < now()",
        )
        .execute(&self.pool)
        .await
        .map_err(older_schema("sweeping unconfirmed uploads"))?;
        Ok(done.rows_affected())
    }

    /// Takes the due keys for [`Janitor::lease`]; with their attempts so far.
    async fn lease_due(&self) -> Result<Vec<(String, i32)>> {
        sqlx::query_as(
            "UPDATE object_deletions SET next_attempt_at = clock_timestamp() + make_interval(secs => $2) \
             WHERE object_key IN (SELECT object_key FROM object_deletions \
                 WHERE next_attempt_at <= now() ORDER BY next_attempt_at \
                 LIMIT $1 FOR UPDATE SKIP LOCKED) \
             RETURNING object_key, attempts",
        )
        .bind(self.batch)
        .bind(self.lease.as_secs_f64())
        .fetch_all(&self.pool)
        .await
        .map_err(older_schema("leasing due object deletions"))
    }

    /// Keys waiting (due or not).
    pub async fn pending(&self) -> Result<i64> {
        sqlx::query_scalar("SELECT count(*) FROM object_deletions")
            .fetch_one(&self.pool)
            .await
            .map_err(older_schema("counting object deletions"))
    }
}
