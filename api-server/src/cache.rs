//! The Redis adapter: suggestions cached with a TTL.

use std::time::Duration;

use redis::AsyncCommands;

use crate::config::CaFile;
use crate::domain::Suggestion;
use crate::ports::{BoxFuture, SuggestionCache};
use crate::{Error, Result};

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

/// A Redis connection manager that connects lazily and reconnects by itself. A `rediss://`
/// URL connects with TLS (rustls), trusting `ca` (`REDIS_CA_FILE`) when given, else the
/// system's roots.
pub fn redis_manager(url: &str, ca: Option<&CaFile>) -> Result<redis::aio::ConnectionManager> {
    let client = match ca {
        None => redis::Client::open(url).map_err(Error::redis("parsing REDIS_URL"))?,
        Some(ca) => redis::Client::build_with_tls(
            url,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(ca.pem.clone().into_bytes()),
            },
        )
        .map_err(Error::redis(
            "reading REDIS_CA_FILE for the rediss:// REDIS_URL",
        ))?,
    };
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(2)))
        .set_number_of_retries(1);
    redis::aio::ConnectionManager::new_lazy_with_config(client, config)
        .map_err(Error::redis("creating the connection manager"))
}

/// `error` of a `rediss://` connection, with what was trusted when it is about certificates
/// (so the message names the variable to fix).
pub fn explain_tls_error(error: &str, ca: Option<&CaFile>) -> String {
    let lower = error.to_lowercase();
    if !["certificate", "tls", "issuer", "handshake"]
        .iter()
        .any(|w| lower.contains(w))
    {
        return error.to_owned();
    }
    match ca {
        Some(ca) => format!(
            "{error} (TLS: the server's certificate must be signed by a CA in REDIS_CA_FILE={})",
            ca.path.display()
        ),
        None => format!(
            "{error} (TLS: the server's certificate must be signed by a CA in the system's roots; set REDIS_CA_FILE for a private CA)"
        ),
    }
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
