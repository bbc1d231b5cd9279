//! Wiring: builds the adapters from the configuration and runs the server and workers.

use std::net::SocketAddr;
use std::sync::Arc;

use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::ai::{OfflineProvider, PerplexityProvider, Retrying, Worker};
use crate::amqp::Topology;
use crate::auth::{Argon2Hasher, Tokens};
use crate::cache::{self, RedisCache};
use crate::config::Config;
use crate::health::Health;
use crate::http::{self, State};
use crate::metrics::Metrics;
use crate::objects::S3Objects;
use crate::objects::janitor::Janitor;
use crate::outbox::Relay;
use crate::ports::{ObjectStore, SuggestionProvider};
use crate::ratelimit::RateLimits;
use crate::store::{self, PgStore};
use crate::usecases::{AttachmentSettings, UseCases};
use crate::{Error, Result};

/// The provider the configuration asks for: Perplexity with a key (retried by
/// `AI_PROVIDER_RETRIES` / `AI_PROVIDER_MAX_DELAY_MS`), else offline.
pub fn provider(config: &Config) -> Result<Arc<dyn SuggestionProvider>> {
    Ok(match &config.pplx_api_key {
        Some(key) => Arc::new(Retrying::new(
            Arc::new(PerplexityProvider::new(
                &config.pplx_base_url,
                key,
                &config.pplx_model,
                config.pplx_timeout,
            )?),
            config.messaging.provider_retry,
        )),
        None => Arc::new(OfflineProvider),
    })
}

/// The provider that answers when the configured one fails: the offline one with
/// `AI_OFFLINE_FALLBACK` (and a Perplexity key; without one the offline one answers anyway).
pub fn fallback(config: &Config) -> Option<Arc<dyn SuggestionProvider>> {
    (config.messaging.offline_fallback && config.pplx_api_key.is_some())
        .then(|| Arc::new(OfflineProvider) as Arc<dyn SuggestionProvider>)
}

/// The broker's endpoint (`RABBITMQ_URL`, `RABBITMQ_CA_FILE`).
pub fn broker(config: &Config) -> crate::amqp::Endpoint {
    crate::amqp::Endpoint {
        url: config.rabbitmq_url.clone(),
        ca: config.rabbitmq_ca.clone(),
    }
}

/// The object store of attachments, when `S3_BUCKET` is set.
pub fn objects(config: &Config) -> Result<Option<Arc<dyn ObjectStore>>> {
    config
        .attachments
        .s3
        .as_ref()
        .map(|s3| {
            S3Objects::new(s3, std::time::Duration::from_secs(10))
                .map(|o| Arc::new(o) as Arc<dyn ObjectStore>)
        })
        .transpose()
}

/// A shutdown switch: flip it to true and everything drains and stops.
pub fn shutdown_switch() -> (watch::Sender<bool>, watch::Receiver<bool>) {
    watch::channel(false)
}

/// Flips `switch` on SIGTERM or SIGINT.
pub fn stop_on_signals(switch: watch::Sender<bool>) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(err) => {
                        tracing::error!(error = %err, "cannot listen for SIGTERM");
                        let _ = ctrl_c.await;
                        let _ = switch.send(true);
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutdown requested; draining");
        let _ = switch.send(true);
    });
}

async fn wait_for(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// The dependency checks of `/ready` (the API's and the worker's).
fn health(
    config: &Config,
    pool: &PgPool,
    redis: &redis::aio::ConnectionManager,
    metrics: &Metrics,
) -> Result<Health> {
    Ok(Health::new(
        pool.clone(),
        redis.clone(),
        broker(config),
        config.healthcheck_token.clone(),
        metrics.clone(),
    )
    .with_cache_ttl(config.ready_cache_ttl)
    .with_objects(objects(config)?)
    .with_redis_url(&config.redis_url, config.redis_ca.clone()))
}

/// Starts the outbox relay, the AI worker and (with attachments) the object janitor, over
/// `store` (shared with the API in one process, so its transactions and hand-offs take their
/// turns with the API's: `store::handoff`) and its pool.
pub fn spawn_workers(
    config: &Config,
    store: &PgStore,
    metrics: &Metrics,
    redis: &redis::aio::ConnectionManager,
    shutdown: &watch::Receiver<bool>,
) -> Result<Vec<JoinHandle<()>>> {
    let topology = Topology::new(&config.amqp_prefix);
    let pool = store.pool();
    let mut relay = Relay::new(
        store.clone(),
        broker(config),
        topology.clone(),
        metrics.clone(),
    );
    relay.max_attempts = config.messaging.outbox_max_attempts;
    let mut worker = Worker::new(
        store.clone(),
        provider(config)?,
        Some(Arc::new(RedisCache::new(
            redis.clone(),
            config.ai_cache_ttl,
        ))),
        metrics.clone(),
        broker(config),
        topology,
    );
    worker.max_attempts = config.messaging.ai_max_attempts;
    if let Some(fallback) = fallback(config) {
        worker = worker.with_fallback(fallback);
    }
    let mut tasks = vec![
        tokio::spawn(relay.run(shutdown.clone())),
        tokio::spawn(worker.run(shutdown.clone())),
    ];
    if let Some(objects) = objects(config)? {
        let janitor = Janitor::new(pool.clone(), objects, metrics.clone());
        tasks.push(tokio::spawn(janitor.run(shutdown.clone())));
    }
    Ok(tasks)
}

/// Every minute, drops the rate limiters' state of keys back at a full quota, so their
/// memory follows the clients of the last minute (see [`crate::ratelimit`]).
async fn forget_idle_rate_limits(state: Arc<State>, mut shutdown: watch::Receiver<bool>) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = every.tick() => state.rate_limits.forget_idle(),
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
    }
}

/// A running server (and workers).
#[derive(Debug)]
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its metrics.
    pub metrics: Metrics,
    switch: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// The switch that stops it.
    pub fn switch(&self) -> watch::Sender<bool> {
        self.switch.clone()
    }

    /// Waits until it has stopped (after the switch flipped).
    pub async fn wait(self) {
        for task in self.tasks {
            let _ = task.await;
        }
    }

    /// Stops it, draining in-flight requests.
    pub async fn stop(self) {
        let _ = self.switch.send(true);
        self.wait().await;
    }
}

/// Serves the API on `listener`; with `workers`, also runs the relay and the AI worker.
pub async fn start(config: &Config, listener: TcpListener, workers: bool) -> Result<Running> {
    let addr = listener.local_addr().map_err(|source| Error::Io {
        context: "reading the listen address".to_owned(),
        source,
    })?;
    let tokens = Tokens::new(
        &config.jwt_secret,
        config.jwt_secret_previous.as_deref(),
        config.jwt_ttl,
    )?;
    let metrics = Metrics::new(&config.app_version)?;
    let pool = store::pool(
        &config.database_url,
        store::PoolSize {
            min: config.database_min_connections,
            max: config.database_max_connections,
        },
        Some(config.limits.request_timeout),
    )?;
    let redis = cache::redis_manager(&config.redis_url, config.redis_ca.as_ref())?;
    let store = PgStore::new(pool.clone());
    let state = Arc::new(State {
        api: UseCases::new(
            store.clone(),
            Argon2Hasher::new(
                config.limits.hash_concurrency,
                config.limits.hash_queue_timeout,
            ),
            tokens,
        )
        .with_caps(config.limits.caps)
        .with_attachments(AttachmentSettings {
            objects: objects(config)?,
            rules: config.attachments.rules.clone(),
            url_ttl: config.attachments.url_ttl,
        }),
        metrics: metrics.clone(),
        health: health(config, &pool, &redis, &metrics)?,
        fault: config.fault.clone(),
        version: config.app_version.clone(),
        body_read_timeout: config.limits.body_read_timeout,
        request_timeout: config.limits.request_timeout,
        max_body_bytes: config.limits.max_body_bytes,
        rate_limits: RateLimits::new(config.limits.rate),
        trusted_proxy_hops: config.limits.trusted_proxy_hops,
    });
    let (switch, shutdown) = shutdown_switch();
    let mut tasks = if workers {
        spawn_workers(config, &store, &metrics, &redis, &shutdown)?
    } else {
        Vec::new()
    };
    tasks.push(tokio::spawn(forget_idle_rate_limits(
        state.clone(),
        shutdown.clone(),
    )));
    tasks.push(tokio::spawn(crate::ai::backlog::watch(
        pool.clone(),
        metrics.clone(),
        shutdown.clone(),
    )));
    let server = http::serve::serve(
        warp::service(http::api(state)),
        listener,
        http::serve::ConnLimits {
            header_read_timeout: config.limits.header_read_timeout,
            idle_timeout: config.limits.idle_timeout,
        },
        wait_for(shutdown.clone()),
    );
    tasks.push(tokio::spawn(async move {
        server.await;
        pool.close().await;
    }));
    tracing::info!(%addr, version = %config.app_version, workers, fault = config.fault.enabled(), "listening");
    Ok(Running {
        addr,
        metrics,
        switch,
        tasks,
    })
}

/// Runs the relay and the AI worker (and the object janitor) until a signal, with
/// `/health`, `/ready` and `/metrics` on `listener` for Prometheus and people. When one of
/// its tasks ends before a signal (a panic), the others are stopped and it returns an error:
/// the process exits non-zero and the kubelet restarts it (its pods have no probes, see the
/// operator's `workload` module).
pub async fn run_worker(config: &Config, listener: TcpListener) -> Result<()> {
    let addr = listener.local_addr().map_err(|source| Error::Io {
        context: "reading the listen address".to_owned(),
        source,
    })?;
    let metrics = Metrics::new(&config.app_version)?;
    let pool = store::pool(
        &config.database_url,
        // No readiness probe fills the worker's pool: it opens connections as it needs them.
        store::PoolSize {
            min: 0,
            max: config.database_max_connections,
        },
        Some(config.limits.request_timeout),
    )?;
    let redis = cache::redis_manager(&config.redis_url, config.redis_ca.as_ref())?;
    let probes = Arc::new(http::probes::Probes {
        health: health(config, &pool, &redis, &metrics)?,
        metrics: metrics.clone(),
        version: config.app_version.clone(),
    });
    let (switch, shutdown) = shutdown_switch();
    stop_on_signals(switch.clone());
    let mut tasks = spawn_workers(
        config,
        &PgStore::new(pool.clone()),
        &metrics,
        &redis,
        &shutdown,
    )?;
    tasks.push(tokio::spawn(crate::ai::backlog::watch(
        pool.clone(),
        metrics.clone(),
        shutdown.clone(),
    )));
    tasks.push(tokio::spawn(http::serve::serve(
        warp::service(http::probes::worker(probes)),
        listener,
        http::serve::ConnLimits {
            header_read_timeout: config.limits.header_read_timeout,
            idle_timeout: config.limits.idle_timeout,
        },
        wait_for(shutdown.clone()),
    )));
    tracing::info!(%addr, version = %config.app_version, "AI worker and outbox relay running");
    let mut running: futures::stream::FuturesUnordered<_> = tasks.into_iter().collect();
    let mut failure = None;
    while let Some(ended) = futures::StreamExt::next(&mut running).await {
        if *shutdown.borrow() || failure.is_some() {
            continue;
        }
        let reason = match ended {
            Ok(()) => "it returned".to_owned(),
            Err(e) => e.to_string(),
        };
        tracing::error!(%reason, "a worker task stopped unexpectedly; stopping the others");
        failure = Some(Error::TaskEnded {
            task: "a worker task",
            reason,
        });
        let _ = switch.send(true);
    }
    pool.close().await;
    tracing::info!("stopped");
    failure.map_or(Ok(()), Err)
}
