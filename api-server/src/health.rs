//! Liveness and readiness.
//!
//! Ready means "can serve": only PostgreSQL is required, since every request needs it. Redis
//! (an optional cache) and RabbitMQ (the outbox holds events while the broker is away) do not
//! make the server unready when they are down; they are reported as `degraded` in the detail
//! and as `listacompra_dependency_up` in the metrics. Otherwise a Redis failover or a broker
//! restart would take every pod out of its Service at once.
//!
//! Probes are cached for [`Health::cache_ttl`] (`READY_CACHE_MS`), and concurrent `/ready`
//! requests share one probe, so probing costs the dependencies the same however often
//! `/ready` is called.

use std::time::{Duration, Instant};

use serde::Serialize;
use sqlx::PgPool;
use subtle::ConstantTimeEq;
use tokio::sync::Mutex;

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

/// All dependencies' state.
#[derive(Debug, Clone, Serialize)]
pub struct Readiness {
    /// PostgreSQL.
    pub postgres: Check,
    /// Redis.
    pub redis: Check,
    /// RabbitMQ.
    pub rabbitmq: Check,
}

impl Readiness {
    /// Whether the server can serve: PostgreSQL is reachable.
    pub fn ready(&self) -> bool {
        self.postgres.ok
    }

    /// The optional dependencies that are down.
    pub fn degraded(&self) -> Vec<&'static str> {
        [("redis", &self.redis), ("rabbitmq", &self.rabbitmq)]
            .into_iter()
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
    amqp_url: String,
    amqp: Mutex<Option<lapin::Connection>>,
    token: Option<String>,
    metrics: Metrics,
    /// How long a probe's result is reused (`READY_CACHE_MS`).
    cache_ttl: Duration,
    last: Mutex<Option<(Instant, Readiness)>>,
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
        amqp_url: String,
        token: Option<String>,
        metrics: Metrics,
    ) -> Self {
        Self {
            pool,
            redis,
            amqp_url,
            amqp: Mutex::new(None),
            token,
            metrics,
            cache_ttl: DEFAULT_CACHE_TTL,
            last: Mutex::new(None),
        }
    }

    /// Reuses a probe's result for `ttl` (`READY_CACHE_MS`; default [`DEFAULT_CACHE_TTL`]).
    #[must_use]
    pub fn with_cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache_ttl = ttl;
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
                crate::amqp::connect(&self.amqp_url, CHECK_TIMEOUT)
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
        let readiness = self.probe().await;
        for (dependency, check) in [
            ("postgres", &readiness.postgres),
            ("redis", &readiness.redis),
            ("rabbitmq", &readiness.rabbitmq),
        ] {
            self.metrics
                .dependency_up
                .with_label_values(&[dependency])
                .set(i64::from(check.ok));
        }
        *last = Some((Instant::now(), readiness.clone()));
        readiness
    }

    /// Checks every dependency concurrently.
    async fn probe(&self) -> Readiness {
        let pg = timed(async {
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
        let amqp = timed(self.amqp_check());
        let (postgres, redis, rabbitmq) = tokio::join!(pg, redis, amqp);
        Readiness {
            postgres,
            redis,
            rabbitmq,
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

    #[test]
    fn only_postgres_is_required_and_the_others_show_as_degraded() {
        let r = Readiness {
            postgres: check(true),
            redis: check(false),
            rabbitmq: check(false),
        };
        assert!(r.ready());
        assert_eq!(r.degraded(), ["redis", "rabbitmq"]);
        let r = Readiness {
            postgres: check(false),
            redis: check(true),
            rabbitmq: check(true),
        };
        assert!(!r.ready());
        assert!(r.degraded().is_empty());
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
