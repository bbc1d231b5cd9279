//! Liveness and readiness.
//!
//! Ready means "can serve": PostgreSQL is required, since every request needs it, and its
//! schema must be at least [`crate::migrate::MIN_SCHEMA`], the oldest revision whose tables
//! this build's code uses (newer revisions are fine: a rollback runs older code on a newer,
//! expanded schema). Redis
//! (an optional cache) and RabbitMQ (the outbox holds events while the broker is away) do not
//! make the server unready when they are down; they are reported as `degraded` in the detail
//! and as `listacompra_dependency_up` in the metrics. Otherwise a Redis failover or a broker
//! restart would take every pod out of its Service at once. The object store of attachments
//! (when configured) is the same: down, it is `degraded` (attachments answer 503), never unready.
//!
//! Probes are cached for [`Health::cache_ttl`] (`READY_CACHE_MS`), and concurrent `/ready`
//! requests share one probe, so probing costs the dependencies the same however often
//! `/ready` is called.

use std::time::{Duration, Instant};

use serde::Serialize;
use sqlx::PgPool;
use subtle::ConstantTimeEq;
use tokio::sync::Mutex;

use crate::config::CaFile;
use crate::metrics::Metrics;

/// How long one dependency check may take.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// One dependency's state.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Reachable.
    pub ok: bool,
    /// How long the check took.
    pub latency_ms: u64,
    /// Why not, when not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The database's schema revision against what this build's code works with.
#[derive(Debug, Clone, Serialize)]
pub struct SchemaCheck {
    /// At least [`Self::min`].
    pub ok: bool,
    /// The revision found (0 = not migrated); absent when it could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<i64>,
    /// The oldest revision this build serves ([`crate::migrate::MIN_SCHEMA`]).
    pub min: i64,
    /// The newest revision this build knows; newer ones are served too.
    pub head: i64,
    /// Why not, when not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl SchemaCheck {
    /// Judges a revision read from the database (or the error reading it).
    pub fn judge(found: Result<i64, String>) -> Self {
        let (min, head) = (crate::migrate::MIN_SCHEMA, crate::migrate::head());
        match found {
            Ok(revision) => Self {
                ok: revision >= min,
                revision: Some(revision),
                min,
                head,
                error: (revision < min).then(|| {
                    format!(
                        "schema revision {revision} is older than this build needs: revision {min} \
                         or newer (it knows up to {head}). Fix: run `listacompra-api migrate` \
                         (0 means the database was never migrated)"
                    )
                }),
            },
            Err(error) => Self {
                ok: false,
                revision: None,
                min,
                head,
                error: Some(format!("cannot read the schema revision: {error}")),
            },
        }
    }
}

/// All dependencies' state.
#[derive(Debug, Clone, Serialize)]
pub struct Readiness {
    /// PostgreSQL.
    pub postgres: Check,
    /// PostgreSQL's schema revision.
    pub schema: SchemaCheck,
    /// Redis.
    pub redis: Check,
    /// RabbitMQ.
    pub rabbitmq: Check,
    /// The object store of attachments, when `S3_BUCKET` is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_store: Option<Check>,
}

impl Readiness {
    /// Whether the server can serve: PostgreSQL is reachable and its schema new enough.
    pub fn ready(&self) -> bool {
        self.postgres.ok && self.schema.ok
    }

    /// The optional dependencies that are down.
    pub fn degraded(&self) -> Vec<&'static str> {
        [
            ("redis", Some(&self.redis)),
            ("rabbitmq", Some(&self.rabbitmq)),
            ("object_store", self.object_store.as_ref()),
        ]
        .into_iter()
        .filter_map(|(name, check)| check.map(|c| (name, c)))
        .filter(|(_, check)| !check.ok)
        .map(|(name, _)| name)
        .collect()
    }
}

/// Default `READY_CACHE_MS`.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_millis(1000);

/// Checks the dependencies.
pub struct Health {
    pool: PgPool,
    redis: redis::aio::ConnectionManager,
    broker: crate::amqp::Endpoint,
    /// `REDIS_URL` is `rediss://`; with `REDIS_CA_FILE` when set (named in TLS errors).
    redis_tls: Option<Option<CaFile>>,
    amqp: Mutex<Option<lapin::Connection>>,
    token: Option<String>,
    metrics: Metrics,
    objects: Option<std::sync::Arc<dyn crate::ports::ObjectStore>>,
    /// How long a probe's result is reused (`READY_CACHE_MS`).
    cache_ttl: Duration,
    last: Mutex<Option<(Instant, Readiness)>>,
    /// The pool was filled to its minimum ([`crate::store::warm`]) since it last held no
    /// connection: the first readiness, and the first after PostgreSQL dropped them all,
    /// wait for it; later probes only ask `SELECT 1` (a pod serving traffic never gives up
    /// its idle connections to a probe, nor turns unready over one connection it cannot
    /// reopen).
    warmed: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health")
            .field("token", &self.token.is_some())
            .finish_non_exhaustive()
    }
}

async fn timed<F, E>(check: F) -> Check
where
    F: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let start = Instant::now();
    let result = tokio::time::timeout(CHECK_TIMEOUT, check).await;
    let latency_ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
    match result {
        Ok(Ok(())) => Check {
            ok: true,
            latency_ms,
            error: None,
        },
        Ok(Err(e)) => Check {
            ok: false,
            latency_ms,
            error: Some(e.to_string()),
        },
        Err(_) => Check {
            ok: false,
            latency_ms,
            error: Some(format!("no answer within {} ms", CHECK_TIMEOUT.as_millis())),
        },
    }
}

/// What a presented health-check token means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenCheck {
    /// No token presented (or none configured): summary only.
    Absent,
    /// The right token: detail.
    Valid,
    /// A wrong token: 401.
    Invalid,
}

/// Compares a presented token with the configured one in constant time (for equal lengths).
pub fn check_token(configured: Option<&str>, presented: Option<&str>) -> TokenCheck {
    match (configured, presented) {
        (_, None) => TokenCheck::Absent,
        (None, Some(_)) => TokenCheck::Invalid,
        (Some(c), Some(p)) => {
            if bool::from(c.as_bytes().ct_eq(p.as_bytes())) {
                TokenCheck::Valid
            } else {
                TokenCheck::Invalid
            }
        }
    }
}

impl Health {
    /// Checks over these connections.
    pub fn new(
        pool: PgPool,
        redis: redis::aio::ConnectionManager,
        broker: impl Into<crate::amqp::Endpoint>,
        token: Option<String>,
        metrics: Metrics,
    ) -> Self {
        Self {
            pool,
            redis,
            broker: broker.into(),
            redis_tls: None,
            amqp: Mutex::new(None),
            token,
            metrics,
            objects: None,
            cache_ttl: DEFAULT_CACHE_TTL,
            last: Mutex::new(None),
            warmed: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Reuses a probe's result for `ttl` (`READY_CACHE_MS`; default [`DEFAULT_CACHE_TTL`]).
    #[must_use]
    pub fn with_cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache_ttl = ttl;
        self
    }

    /// Also checks the object store of attachments (reported, never required).
    #[must_use]
    pub fn with_objects(
        mut self,
        objects: Option<std::sync::Arc<dyn crate::ports::ObjectStore>>,
    ) -> Self {
        self.objects = objects;
        self
    }

    /// Tells which Redis is checked: for a `rediss://` `url`, a failed check about
    /// certificates says which were trusted (`ca`, from `REDIS_CA_FILE`, or the system's).
    #[must_use]
    pub fn with_redis_url(mut self, url: &str, ca: Option<CaFile>) -> Self {
        self.redis_tls = url.starts_with("rediss://").then_some(ca);
        self
    }

    /// Interprets the `X-Healthcheck-Token` header.
    pub fn token(&self, presented: Option<&str>) -> TokenCheck {
        check_token(self.token.as_deref(), presented)
    }

    async fn amqp_check(&self) -> Result<(), String> {
        let mut slot = self.amqp.lock().await;
        if slot.as_ref().is_none_or(|c| !c.status().connected()) {
            *slot = Some(
                crate::amqp::connect_to(&self.broker, CHECK_TIMEOUT)
                    .await
                    .map_err(|e| e.to_string())?,
            );
        }
        let conn = slot.as_ref().ok_or("not connected")?;
        // A channel round trip proves the broker answers, not just that a socket is open.
        match conn.create_channel().await {
            Ok(channel) => {
                let _ = channel.close(200, "ok".into()).await;
                Ok(())
            }
            Err(e) => {
                *slot = None;
                Err(e.to_string())
            }
        }
    }

    /// The dependencies' state: the last probe's when younger than the cache TTL, else
    /// a new probe (one at a time: concurrent callers wait for it and share its result).
    pub async fn readiness(&self) -> Readiness {
        let mut last = self.last.lock().await;
        if let Some((at, readiness)) = last.as_ref()
            && at.elapsed() < self.cache_ttl
        {
            return readiness.clone();
        }
        self.metrics.ready_probes.inc();
        let readiness = self.probe().await;
        for (dependency, check) in [
            ("postgres", Some(&readiness.postgres)),
            ("redis", Some(&readiness.redis)),
            ("rabbitmq", Some(&readiness.rabbitmq)),
            ("object_store", readiness.object_store.as_ref()),
        ]
        .into_iter()
        .filter_map(|(d, c)| c.map(|c| (d, c)))
        {
            self.metrics
                .dependency_up
                .with_label_values(&[dependency])
                .set(i64::from(check.ok));
        }
        if let Some(revision) = readiness.schema.revision {
            self.metrics.schema_revision.set(revision);
        }
        *last = Some((Instant::now(), readiness.clone()));
        readiness
    }

    /// Checks every dependency concurrently.
    async fn probe(&self) -> Readiness {
        let pg = timed(async {
            use std::sync::atomic::Ordering;
            if !self.warmed.load(Ordering::Relaxed) || self.pool.size() == 0 {
                crate::store::warm(&self.pool).await?;
                self.warmed.store(true, Ordering::Relaxed);
            }
            sqlx::query_scalar::<_, i32>("SELECT 1")
                .fetch_one(&self.pool)
                .await
                .map(|_| ())
        });
        let redis = timed(async {
            let mut conn = self.redis.clone();
            redis::cmd("PING")
                .query_async::<String>(&mut conn)
                .await
                .map(|_| ())
        });
        let schema = async {
            let found = tokio::time::timeout(CHECK_TIMEOUT, crate::migrate::current(&self.pool))
                .await
                .map_err(|_| format!("no answer within {} ms", CHECK_TIMEOUT.as_millis()))
                .and_then(|r| r.map_err(|e| e.to_string()));
            SchemaCheck::judge(found)
        };
        let amqp = timed(self.amqp_check());
        let objects = async {
            match &self.objects {
                Some(objects) => Some(timed(objects.ping()).await),
                None => None,
            }
        };
        let (postgres, schema, mut redis, rabbitmq, object_store) =
            tokio::join!(pg, schema, redis, amqp, objects);
        if let (Some(tls), Some(error)) = (&self.redis_tls, &mut redis.error) {
            *error = crate::cache::explain_tls_error(error, tls.as_ref());
        }
        Readiness {
            postgres,
            schema,
            redis,
            rabbitmq,
            object_store,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(ok: bool) -> Check {
        Check {
            ok,
            latency_ms: 1,
            error: (!ok).then(|| "down".to_owned()),
        }
    }

    fn at(revision: i64) -> SchemaCheck {
        SchemaCheck::judge(Ok(revision))
    }

    #[test]
    fn only_postgres_is_required_and_the_others_show_as_degraded() {
        let min = crate::migrate::MIN_SCHEMA;
        let r = Readiness {
            postgres: check(true),
            schema: at(min),
            redis: check(false),
            rabbitmq: check(false),
            object_store: Some(check(false)),
        };
        assert!(r.ready());
        assert_eq!(r.degraded(), ["redis", "rabbitmq", "object_store"]);
        let r = Readiness {
            postgres: check(false),
            schema: at(min),
            redis: check(true),
            rabbitmq: check(true),
            object_store: None,
        };
        assert!(!r.ready());
        assert!(r.degraded().is_empty());
        let r = Readiness {
            postgres: check(true),
            schema: at(min - 1),
            redis: check(true),
            rabbitmq: check(true),
            object_store: Some(check(true)),
        };
        assert!(!r.ready());
    }

    #[test]
    fn the_schema_must_be_at_least_the_minimum_and_newer_revisions_are_served() {
        let (min, head) = (crate::migrate::MIN_SCHEMA, crate::migrate::head());
        assert!(
            min >= 1 && min <= head,
            "MIN_SCHEMA {min} outside 1..={head}"
        );
        for rev in [min, head, head + 1] {
            let c = at(rev);
            assert!(c.ok && c.error.is_none(), "{rev}: {c:?}");
        }
        for rev in [0, min - 1] {
            let c = at(rev);
            assert!(!c.ok, "{rev}");
            let e = c.error.unwrap_or_default();
            assert!(
                e.contains(&format!("revision {rev} ")) && e.contains(&format!("revision {min} ")),
                "{e}"
            );
        }
        let c = SchemaCheck::judge(Err("connection refused".to_owned()));
        assert!(!c.ok && c.revision.is_none());
        assert!(c.error.unwrap_or_default().contains("connection refused"));
    }

    #[test]
    fn tokens_are_checked_exactly() {
        assert_eq!(check_token(Some("s3cret"), None), TokenCheck::Absent);
        assert_eq!(
            check_token(Some("s3cret"), Some("s3cret")),
            TokenCheck::Valid
        );
        assert_eq!(
            check_token(Some("s3cret"), Some("s3cre")),
            TokenCheck::Invalid
        );
        assert_eq!(
            check_token(Some("s3cret"), Some("s3creT")),
            TokenCheck::Invalid
        );
        assert_eq!(check_token(None, Some("anything")), TokenCheck::Invalid);
        assert_eq!(check_token(None, None), TokenCheck::Absent);
    }
}
