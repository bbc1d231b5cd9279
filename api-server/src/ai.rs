//! AI suggestions: the providers (Perplexity, offline), the Redis cache and the worker that
//! consumes suggestion requests from RabbitMQ.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::types::FieldTable;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::PgPool;
use tokio::sync::watch;
use uuid::Uuid;

use crate::amqp::Topology;
use crate::domain::{self, ItemSummary, Suggestion};
use crate::metrics::Metrics;
use crate::outbox::{self, Event};
use crate::ports::{BoxFuture, SuggestionCache, SuggestionProvider};
use crate::store::Store;
use crate::{Error, Result};

/// How many suggestions a request yields at most.
pub const MAX_SUGGESTIONS: usize = 8;

/// Deterministic suggestions from the list's items and categories; needs no network.
#[derive(Debug, Clone, Copy, Default)]
pub struct OfflineProvider;

impl SuggestionProvider for OfflineProvider {
    fn name(&self) -> &'static str {
        "offline"
    }

    fn suggest<'a>(&'a self, items: &'a [ItemSummary]) -> BoxFuture<'a, Result<Vec<Suggestion>>> {
        Box::pin(async move { Ok(domain::offline_suggestions(items, MAX_SUGGESTIONS)) })
    }
}

/// The Perplexity chat-completions API.
#[derive(Clone)]
pub struct PerplexityProvider {
    client: reqwest::Client,
    base_url: String,
    api_key: String,
    model: String,
    timeout: Duration,
}

impl std::fmt::Debug for PerplexityProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PerplexityProvider")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize)]
struct ChatResponse {
    choices: Vec<ChatChoice>,
}

#[derive(Debug, Deserialize)]
struct ChatChoice {
    message: ChatMessage,
}

#[derive(Debug, Serialize, Deserialize)]
struct ChatMessage {
    role: String,
    content: String,
}

fn provider_err(reason: impl Into<String>) -> Error {
    Error::Provider {
        provider: "perplexity",
        reason: reason.into(),
    }
}

impl PerplexityProvider {
    /// A client for `base_url` (`https://api.perplexity.ai` in production).
    pub fn new(base_url: &str, api_key: &str, model: &str, timeout: Duration) -> Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .build()
            .map_err(|e| provider_err(format!("building the HTTP client: {e}")))?;
        Ok(Self {
            client,
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key: api_key.to_owned(),
            model: model.to_owned(),
            timeout,
        })
    }

    fn prompt(items: &[ItemSummary]) -> String {
        let listed: Vec<String> = items
            .iter()
            .map(|i| match &i.category {
                Some(c) => format!("- {} ({c})", i.name),
                None => format!("- {}", i.name),
            })
            .collect();
        format!(
            "My shopping list:\n{}\n\nSuggest up to {MAX_SUGGESTIONS} other items I probably need. \
             Answer only with a JSON array of objects with the keys \"name\", \"category\" and \"reason\".",
            if listed.is_empty() {
                "(empty)".to_owned()
            } else {
                listed.join("\n")
            }
        )
    }

    /// Parses the assistant's answer: a JSON array, possibly inside a code fence.
    pub fn parse_content(content: &str) -> Result<Vec<Suggestion>> {
        let start = content.find('[');
        let end = content.rfind(']');
        let (Some(start), Some(end)) = (start, end) else {
            return Err(provider_err("the answer holds no JSON array"));
        };
        if end < start {
            return Err(provider_err("the answer holds no JSON array"));
        }
        #[derive(Deserialize)]
        struct Raw {
            name: String,
            category: Option<String>,
            reason: Option<String>,
        }
        let raw: Vec<Raw> = serde_json::from_str(&content[start..=end])
            .map_err(|e| provider_err(format!("the answer is not the JSON asked for: {e}")))?;
        Ok(raw
            .into_iter()
            .filter(|r| !r.name.trim().is_empty())
            .take(MAX_SUGGESTIONS)
            .map(|r| Suggestion {
                name: r.name.trim().to_lowercase(),
                category: r
                    .category
                    .map(|c| c.trim().to_lowercase())
                    .filter(|c| !c.is_empty()),
                reason: r.reason.unwrap_or_default(),
            })
            .collect())
    }

    async fn call(&self, items: &[ItemSummary]) -> Result<Vec<Suggestion>> {
        let body = json!({
            "model": self.model,
            "temperature": 0,
            "messages": [
                {"role": "system", "content": "You help people complete their shopping lists. Be concise."},
                {"role": "user", "content": Self::prompt(items)},
            ],
        });
        let response = self
            .client
            .post(format!("{}/chat/completions", self.base_url))
            .bearer_auth(&self.api_key)
            .json(&body)
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    provider_err(format!("timed out after {} ms", self.timeout.as_millis()))
                } else {
                    provider_err(format!("request failed: {e}"))
                }
            })?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            let hint = match status.as_u16() {
                401 | 403 => " (check PPLX_API_KEY)",
                429 => " (rate limited)",
                _ => "",
            };
            let excerpt: String = text.chars().take(200).collect();
            return Err(provider_err(format!("HTTP {status}{hint}: {excerpt}")));
        }
        let parsed: ChatResponse = response.json().await.map_err(|e| {
            if e.is_timeout() {
                provider_err(format!("timed out after {} ms", self.timeout.as_millis()))
            } else {
                provider_err(format!("unexpected response body: {e}"))
            }
        })?;
        let content = parsed
            .choices
            .into_iter()
            .next()
            .map(|c| c.message.content)
            .ok_or_else(|| provider_err("the response has no choices"))?;
        Self::parse_content(&content)
    }
}

impl SuggestionProvider for PerplexityProvider {
    fn name(&self) -> &'static str {
        "perplexity"
    }

    fn suggest<'a>(&'a self, items: &'a [ItemSummary]) -> BoxFuture<'a, Result<Vec<Suggestion>>> {
        Box::pin(self.call(items))
    }
}

/// Suggestions cached in Redis with a TTL.
#[derive(Clone)]
pub struct RedisCache {
    conn: redis::aio::ConnectionManager,
    ttl: Duration,
}

impl std::fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCache")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// A Redis connection manager that connects lazily and reconnects by itself.
pub fn redis_manager(url: &str) -> Result<redis::aio::ConnectionManager> {
    let client = redis::Client::open(url).map_err(Error::redis("parsing REDIS_URL"))?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(2)))
        .set_number_of_retries(1);
    redis::aio::ConnectionManager::new_lazy_with_config(client, config)
        .map_err(Error::redis("creating the connection manager"))
}

impl RedisCache {
    /// A cache over `conn` whose entries live `ttl`.
    pub fn new(conn: redis::aio::ConnectionManager, ttl: Duration) -> Self {
        Self { conn, ttl }
    }
}

impl SuggestionCache for RedisCache {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<Suggestion>>>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let raw: Option<String> = conn
                .get(key)
                .await
                .map_err(Error::redis("reading the cache"))?;
            raw.map(|r| serde_json::from_str(&r).map_err(Error::json("cached suggestions")))
                .transpose()
        })
    }

    fn put<'a>(&'a self, key: &'a str, value: &'a [Suggestion]) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let text = serde_json::to_string(value).map_err(Error::json("encoding suggestions"))?;
            let mut conn = self.conn.clone();
            let () = conn
                .set_ex(key, text, self.ttl.as_secs().max(1))
                .await
                .map_err(Error::redis("writing the cache"))?;
            Ok(())
        })
    }
}

/// The cache key of a provider's answer for these items (order and case do not matter).
pub fn cache_key(provider: &str, items: &[ItemSummary]) -> String {
    let mut normal: Vec<(String, String)> = items
        .iter()
        .map(|i| {
            (
                i.name.trim().to_lowercase(),
                i.category.clone().unwrap_or_default().to_lowercase(),
            )
        })
        .collect();
    normal.sort();
    let mut h = std::hash::DefaultHasher::new();
    normal.hash(&mut h);
    format!("listacompra:ai:v1:{provider}:{:016x}", h.finish())
}

/// What happened to one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    /// Suggestions stored.
    Done,
    /// The provider failed; the request is marked failed.
    Failed,
    /// Seen before (a redelivery): no effect.
    Duplicate,
    /// Not a suggestion request we can read: dropped.
    Ignored,
}

/// The consumer of suggestion requests.
#[derive(Debug, Clone)]
pub struct Worker {
    store: Store,
    provider: Arc<dyn SuggestionProvider>,
    cache: Option<Arc<dyn SuggestionCache>>,
    metrics: Metrics,
    url: String,
    topology: Topology,
}

/// Consumer name in `processed_events`.
pub const CONSUMER: &str = "ai-worker";

impl Worker {
    /// A worker.
    pub fn new(
        store: Store,
        provider: Arc<dyn SuggestionProvider>,
        cache: Option<Arc<dyn SuggestionCache>>,
        metrics: Metrics,
        url: String,
        topology: Topology,
    ) -> Self {
        Self {
            store,
            provider,
            cache,
            metrics,
            url,
            topology,
        }
    }

    fn pool(&self) -> &PgPool {
        self.store.pool()
    }

    async fn suggestions(&self, items: &[ItemSummary]) -> Result<Vec<Suggestion>> {
        let key = cache_key(self.provider.name(), items);
        if let Some(cache) = &self.cache {
            match cache.get(&key).await {
                Ok(Some(hit)) => return Ok(hit),
                Ok(None) => {}
                Err(err) => {
                    tracing::warn!(error = %err, "AI cache read failed; asking the provider")
                }
            }
        }
        let fresh = self.provider.suggest(items).await?;
        if let Some(cache) = &self.cache
            && let Err(err) = cache.put(&key, &fresh).await
        {
            tracing::warn!(error = %err, "AI cache write failed");
        }
        Ok(fresh)
    }

    /// Handles one event body; deduplicates by event id in the transaction of its effect.
    /// An `Err` means "try again later" (the delivery is requeued).
    pub async fn handle(&self, body: &[u8]) -> Result<Handled> {
        let Ok(event) = serde_json::from_slice::<Event>(body) else {
            tracing::warn!("dropping a message that is not an outbox event");
            return Ok(Handled::Ignored);
        };
        let ids = (
            event
                .payload
                .get("request_id")
                .and_then(|v| v.as_str())
                .and_then(|s| Uuid::parse_str(s).ok()),
            event
                .payload
                .get("list_id")
                .and_then(|v| v.as_str())
                .and_then(|s| Uuid::parse_str(s).ok()),
        );
        let (Some(request_id), Some(list_id)) = ids else {
            tracing::warn!(event_id = %event.id, "dropping a suggestion event without request_id/list_id");
            return Ok(Handled::Ignored);
        };
        let mut tx = self
            .pool()
            .begin()
            .await
            .map_err(Error::db("starting a transaction"))?;
        if !outbox::first_delivery(&mut tx, CONSUMER, event.id).await? {
            tracing::info!(event_id = %event.id, "duplicate delivery ignored");
            return Ok(Handled::Duplicate);
        }
        let items = self.store.item_summaries(list_id).await?;
        let outcome = self.suggestions(&items).await;
        let handled = match outcome {
            Ok(suggestions) => {
                let value = serde_json::to_value(&suggestions)
                    .map_err(Error::json("encoding suggestions"))?;
                sqlx::query(
                    "UPDATE suggestion_requests SET status = 'done', provider = $2, suggestions = $3, \
                     error = NULL, completed_at = now() WHERE id = $1",
                )
                .bind(request_id)
                .bind(self.provider.name())
                .bind(value)
                .execute(&mut *tx)
                .await
                .map_err(Error::db("storing suggestions"))?;
                Handled::Done
            }
            Err(err) => {
                tracing::warn!(request_id = %request_id, error = %err, "AI suggestion job failed");
                sqlx::query(
                    "UPDATE suggestion_requests SET status = 'failed', provider = $2, error = $3, \
                     completed_at = now() WHERE id = $1",
                )
                .bind(request_id)
                .bind(self.provider.name())
                .bind(err.to_string())
                .execute(&mut *tx)
                .await
                .map_err(Error::db("storing a failed suggestion job"))?;
                Handled::Failed
            }
        };
        tx.commit()
            .await
            .map_err(Error::db("committing a suggestion job"))?;
        let outcome = if handled == Handled::Done {
            "success"
        } else {
            "failure"
        };
        self.metrics.ai_jobs.with_label_values(&[outcome]).inc();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_keys_ignore_order_and_case_but_not_provider() {
        let a = vec![
            ItemSummary {
                name: "Leche".to_owned(),
                category: Some("dairy".to_owned()),
            },
            ItemSummary {
                name: "pan".to_owned(),
                category: None,
            },
        ];
        let b = vec![
            a[1].clone(),
            ItemSummary {
                name: "leche".to_owned(),
                ..a[0].clone()
            },
        ];
        assert_eq!(cache_key("offline", &a), cache_key("offline", &b));
        assert_ne!(cache_key("offline", &a), cache_key("perplexity", &a));
        assert_ne!(cache_key("offline", &a), cache_key("offline", &a[..1]));
    }

    #[test]
    fn answers_are_parsed_from_fenced_json() {
        let content = "Here you go:\n```json\n[{\"name\": \" Butter \", \"category\": \"Dairy\", \"reason\": \"toast\"}, {\"name\": \"\"}]\n```";
        let parsed = PerplexityProvider::parse_content(content).unwrap();
        assert_eq!(
            parsed,
            vec![Suggestion {
                name: "butter".to_owned(),
                category: Some("dairy".to_owned()),
                reason: "toast".to_owned()
            }]
        );
        assert!(PerplexityProvider::parse_content("no json here").is_err());
        assert!(PerplexityProvider::parse_content("[not json]").is_err());
    }
}
