//! Configuration from the environment (and a `.env` file for local use).
//!
//! A missing or invalid value stops start-up with one message naming the variable.

use std::path::PathBuf;
use std::time::Duration;

use crate::ai::RetryPolicy;
use crate::domain::Caps;
use crate::fault::FaultConfig;
use crate::ratelimit::RateLimitConfig;
use crate::{Error, Result};

/// Longest `AMQP_PREFIX`: queue names (`<prefix>.ai.suggestions.dlq`) must fit AMQP's 255
/// bytes.
pub const MAX_AMQP_PREFIX: usize = 200;

/// Everything `serve` and `worker` need.
#[derive(Clone)]
pub struct Config {
    /// `DATABASE_URL` (PostgreSQL).
    pub database_url: String,
    /// `REDIS_URL`.
    pub redis_url: String,
    /// `RABBITMQ_URL` (AMQP 0-9-1).
    pub rabbitmq_url: String,
    /// `REDIS_CA_FILE`: CA certificates that sign the server's certificate of a `rediss://`
    /// Redis (instead of the system's roots).
    pub redis_ca: Option<CaFile>,
    /// `RABBITMQ_CA_FILE`: CA certificates that sign the server's certificate of an
    /// `amqps://` RabbitMQ (in addition to the system's roots).
    pub rabbitmq_ca: Option<CaFile>,
    /// `JWT_SECRET`, at least 32 bytes: signs new tokens (and verifies them).
    pub jwt_secret: String,
    /// `JWT_SECRET_PREVIOUS`, optional, at least 32 bytes: still verifies tokens signed
    /// before a rotation (see [`crate::auth::Tokens`]).
    pub jwt_secret_previous: Option<String>,
    /// `JWT_TTL_SECONDS`, default 3600, between 60 and 86400.
    pub jwt_ttl: Duration,
    /// `PPLX_API_KEY`; without it the offline provider answers.
    pub pplx_api_key: Option<String>,
    /// `PPLX_BASE_URL`, default `https://api.perplexity.ai`.
    pub pplx_base_url: String,
    /// `PPLX_MODEL`, default `sonar`.
    pub pplx_model: String,
    /// `PPLX_TIMEOUT_MS`, default 10000.
    pub pplx_timeout: Duration,
    /// `HEALTHCHECK_TOKEN`: with it, `/ready` shows per-dependency detail.
    pub healthcheck_token: Option<String>,
    /// `READY_CACHE_MS`, default 1000: how long `/ready` reuses a dependency probe.
    pub ready_cache_ttl: Duration,
    /// `PORT`, default 8080.
    pub port: u16,
    /// `APP_VERSION`, default the crate version; the `version` label of every metric.
    pub app_version: String,
    /// `RUN_WORKER`, default true: `serve` also runs the outbox relay and the AI worker.
    pub run_worker: bool,
    /// `AI_CACHE_TTL_SECONDS`, default 3600.
    pub ai_cache_ttl: Duration,
    /// `DATABASE_MAX_CONNECTIONS`, default 10: PostgreSQL connections a process may open.
    /// Every API pod keeps this many open (see `database_min_connections`); a worker opens
    /// them as it needs them. A rollout adds its surge pods': size PostgreSQL's
    /// `max_connections` for it.
    pub database_max_connections: u32,
    /// `DATABASE_MIN_CONNECTIONS`, default `DATABASE_MAX_CONNECTIONS` (a fixed-size pool):
    /// connections the API server opens before `/ready` first answers 200 (and again after
    /// PostgreSQL dropped them all) and keeps open. A request that finds no
    /// idle connection opens one itself and waits for that connect alone (sqlx), so on a
    /// busy database host a pool still growing answered 503 under its first requests; a
    /// pool that is full from the start only ever waits for a connection another request
    /// gives back.
    pub database_min_connections: u32,
    /// `AMQP_PREFIX`, default `listacompra`: exchange and queue names start with it.
    pub amqp_prefix: String,
    /// Fault injection (`FAULT_LATENCY_MS`, `FAULT_ERROR_RATE`, `FAULT_ROUTES`).
    pub fault: FaultConfig,
    /// What one client may cost the server (timeouts, limits); see [`Limits`].
    pub limits: Limits,
    /// Bounds of the relay, the AI worker and the provider; see [`Messaging`].
    pub messaging: Messaging,
    /// Attachments: the object store and what may be stored; see [`Attachments`].
    pub attachments: Attachments,
}

/// Attachments: where the bytes go and what may be uploaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachments {
    /// The bucket (`S3_BUCKET` and the other `S3_*`); `None` turns attachments off (501).
    pub s3: Option<crate::objects::S3Config>,
    /// `ATTACHMENT_MAX_BYTES`, `ATTACHMENT_QUOTA_BYTES`, `ATTACHMENT_TYPES`,
    /// `ATTACHMENT_MAX_PER_LIST`.
    pub rules: crate::domain::AttachmentRules,
    /// `ATTACHMENT_URL_TTL_SECONDS`, default 300 (at most 604800, SigV4's limit): how long
    /// presigned upload and download URLs work; an upload not confirmed by then is swept.
    pub url_ttl: Duration,
}

impl Default for Attachments {
    fn default() -> Self {
        Self {
            s3: None,
            rules: crate::domain::AttachmentRules::default(),
            url_ttl: Duration::from_secs(300),
        }
    }
}

/// How hard the outbox relay, the AI worker and the AI provider try before giving up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Messaging {
    /// `AI_MAX_ATTEMPTS`, default 5 (at least 1): attempts of one suggestion message before
    /// it is moved to the dead-letter queue and its request marked failed.
    pub ai_max_attempts: u32,
    /// `OUTBOX_MAX_ATTEMPTS`, default 5 (at least 1): failed publishes of one outbox event
    /// before it is moved aside.
    pub outbox_max_attempts: i32,
    /// `AI_PROVIDER_RETRIES` (default 3) and `AI_PROVIDER_MAX_DELAY_MS` (default 10000):
    /// retries of the AI provider when it is unavailable (429, 5xx, timeout), and the longest
    /// pause between two calls, also the longest `Retry-After` honoured.
    pub provider_retry: RetryPolicy,
    /// `AI_OFFLINE_FALLBACK`, default false: when the AI provider still fails after its
    /// retries, the offline provider answers instead of the job failing.
    pub offline_fallback: bool,
}

impl Default for Messaging {
    fn default() -> Self {
        Self {
            ai_max_attempts: crate::ai::DEFAULT_MAX_ATTEMPTS,
            outbox_max_attempts: crate::outbox::DEFAULT_MAX_ATTEMPTS,
            provider_retry: RetryPolicy::default(),
            offline_fallback: false,
        }
    }
}

/// A PEM file of CA certificates to trust, read and checked at start-up.
#[derive(Clone, PartialEq, Eq)]
pub struct CaFile {
    /// The variable that named it (for error messages).
    pub var: &'static str,
    /// Where it is.
    pub path: PathBuf,
    /// Its content (one or more `BEGIN CERTIFICATE` blocks).
    pub pem: String,
}

impl std::fmt::Debug for CaFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}", self.var, self.path.display())
    }
}

impl CaFile {
    /// Reads `path` (named by `var`); it must hold at least one PEM certificate.
    pub fn read(var: &'static str, path: &str) -> Result<Self> {
        let pem = std::fs::read_to_string(path).map_err(|e| Error::Config {
            var,
            reason: format!(
                "cannot read {path:?}: {e}. Fix: point it at a readable PEM file of CA certificates"
            ),
        })?;
        if !pem.contains("-----BEGIN CERTIFICATE-----") {
            return Err(Error::Config {
                var,
                reason: format!("{path:?} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"),
            });
        }
        Ok(Self {
            var,
            path: PathBuf::from(path),
            pem,
        })
    }
}

/// What one client may cost the server. Every value has an environment variable and a
/// default chosen for the production sample (a 256 MiB pod behind a Kubernetes Service).
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// `HTTP_HEADER_READ_TIMEOUT_SECONDS`, default 10: a client must send a whole request
    /// head within this time of its first byte; otherwise the connection is closed.
    pub header_read_timeout: Duration,
    /// `HTTP_IDLE_TIMEOUT_SECONDS`, default 30: a connection on which no byte is read or
    /// written for this long is closed (silent clients, idle keep-alive, clients that stop
    /// reading). Must exceed the time any request takes to handle.
    pub idle_timeout: Duration,
    /// `HTTP_BODY_READ_TIMEOUT_SECONDS`, default 10: time to receive a request body once the
    /// head has arrived; a slower client gets 408 and the connection is closed.
    pub body_read_timeout: Duration,
    /// `HTTP_REQUEST_TIMEOUT_SECONDS`, default 20 (below the idle timeout): time to handle a
    /// request once its body is read; a request still running is dropped and answered 503
    /// with Retry-After (a write may or may not have been kept: the cut can land during its
    /// commit), and the server's database sessions use it as `statement_timeout`, so a stuck
    /// query frees its connection and locks instead of piling requests up.
    pub request_timeout: Duration,
    /// `PASSWORD_HASH_CONCURRENCY`, default 4: argon2id hashes (login, register) running at
    /// once. Each holds 19 MiB ([`crate::auth::ARGON2_MEMORY_KIB`]), so this is the memory
    /// budget of password hashing: 4 × 19 MiB = 76 MiB by default.
    pub hash_concurrency: usize,
    /// `PASSWORD_HASH_QUEUE_TIMEOUT_MS`, default 2000: how long a login or registration waits
    /// for a hashing slot before it is answered 503 with Retry-After.
    pub hash_queue_timeout: Duration,
    /// Rate limits (`RATE_LIMIT_*_PER_MINUTE`; see [`RateLimitConfig`]).
    pub rate: RateLimitConfig,
    /// `TRUSTED_PROXY_HOPS`, default 0: how many proxies in front of the server append to
    /// `X-Forwarded-For`. With 0 the client address of the rate limits is the connection's
    /// peer address and `X-Forwarded-For` is ignored (anyone can write it); with n it is the
    /// n-th address from the right of `X-Forwarded-For` (the one the outermost trusted proxy
    /// saw), see [`crate::http::client_ip`].
    pub trusted_proxy_hops: usize,
    /// Caps (`MAX_ITEMS_PER_LIST`, `MAX_MEMBERS_PER_LIST`, `MAX_LISTS_PER_USER`); one more
    /// is answered 409 naming the cap.
    pub caps: Caps,
    /// `HTTP_MAX_BODY_BYTES`, default 65536: larger bodies are answered 413.
    pub max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(20),
            hash_concurrency: crate::auth::DEFAULT_HASH_CONCURRENCY,
            hash_queue_timeout: crate::auth::DEFAULT_HASH_QUEUE_TIMEOUT,
            rate: RateLimitConfig::default(),
            trusted_proxy_hops: 0,
            caps: Caps::default(),
            max_body_bytes: crate::http::MAX_BODY,
        }
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets and URLs with passwords are never printed.
        f.debug_struct("Config")
            .field("port", &self.port)
            .field("app_version", &self.app_version)
            .field("run_worker", &self.run_worker)
            .field("pplx", &self.pplx_api_key.is_some())
            .field("fault", &self.fault)
            .finish_non_exhaustive()
    }
}

/// Loads `.env` from the working directory when present; real environment variables win.
pub fn load_dotenv() {
    // A missing .env is normal (Kubernetes passes the environment); a broken one is reported.
    if let Err(err) = dotenvy::dotenv()
        && !err.not_found()
    {
        eprintln!("warning: ignoring .env: {err}");
    }
}

/// Reads variables through `lookup`, so tests can pass a map instead of the process environment.
#[derive(Debug)]
pub struct Vars<F>(pub F);

impl<F: Fn(&str) -> Option<String>> Vars<F> {
    fn optional(&self, var: &'static str) -> Option<String> {
        (self.0)(var).filter(|v| !v.trim().is_empty())
    }

    fn required(&self, var: &'static str) -> Result<String> {
        self.optional(var).ok_or(Error::Config {
            var,
            reason: "is not set".to_owned(),
        })
    }

    fn url(&self, var: &'static str, schemes: &[&str]) -> Result<String> {
        let value = self.required(var)?;
        let scheme = value.split_once("://").map(|(s, _)| s);
        match scheme {
            Some(s) if schemes.contains(&s) => Ok(value),
            _ => Err(Error::Config {
                var,
                reason: format!("must be a URL starting with one of {schemes:?}://"),
            }),
        }
    }

    fn parsed<T: std::str::FromStr>(&self, var: &'static str, default: T) -> Result<T>
    where
        T::Err: std::fmt::Display,
    {
        match self.optional(var) {
            None => Ok(default),
            Some(v) => v.trim().parse().map_err(|e: T::Err| Error::Config {
                var,
                reason: format!("{v:?} is invalid: {e}"),
            }),
        }
    }

    /// `DATABASE_URL` alone (what `migrate` and `seed` need).
    pub fn database_url(&self) -> Result<String> {
        self.url("DATABASE_URL", &["postgres", "postgresql"])
    }

    /// The whole configuration.
    pub fn config(&self) -> Result<Config> {
        let jwt_secret = self.required("JWT_SECRET")?;
        crate::auth::check_secret("JWT_SECRET", &jwt_secret)?;
        let jwt_secret_previous = self.optional("JWT_SECRET_PREVIOUS");
        if let Some(previous) = &jwt_secret_previous {
            crate::auth::check_secret("JWT_SECRET_PREVIOUS", previous)?;
        }
        let jwt_ttl = Duration::from_secs(self.parsed("JWT_TTL_SECONDS", 3600u64)?);
        crate::auth::check_ttl(jwt_ttl)?;
        let bool_var = |var: &'static str, default: bool| -> Result<bool> {
            match self.optional(var).map(|v| v.to_ascii_lowercase()) {
                None => Ok(default),
                Some(v) if ["1", "true", "yes", "on"].contains(&v.as_str()) => Ok(true),
                Some(v) if ["0", "false", "no", "off"].contains(&v.as_str()) => Ok(false),
                Some(v) => Err(Error::Config {
                    var,
                    reason: format!("{v:?} is not a boolean (true/false)"),
                }),
            }
        };
        let redis_url = self.url("REDIS_URL", &["redis", "rediss"])?;
        let rabbitmq_url = self.url("RABBITMQ_URL", &["amqp", "amqps"])?;
        let (database_min_connections, database_max_connections) = self.pool_size()?;
        Ok(Config {
            database_url: self.database_url()?,
            redis_ca: self.ca_file("REDIS_CA_FILE", "REDIS_URL", &redis_url, "rediss")?,
            rabbitmq_ca: self.ca_file(
                "RABBITMQ_CA_FILE",
                "RABBITMQ_URL",
                &rabbitmq_url,
                "amqps",
            )?,
            redis_url,
            rabbitmq_url,
            jwt_secret,
            jwt_secret_previous,
            jwt_ttl,
            pplx_api_key: self.optional("PPLX_API_KEY"),
            pplx_base_url: self
                .optional("PPLX_BASE_URL")
                .unwrap_or_else(|| "https://api.perplexity.ai".to_owned()),
            pplx_model: self
                .optional("PPLX_MODEL")
                .unwrap_or_else(|| "sonar".to_owned()),
            pplx_timeout: Duration::from_millis(self.parsed("PPLX_TIMEOUT_MS", 10_000u64)?),
            healthcheck_token: self.optional("HEALTHCHECK_TOKEN"),
            ready_cache_ttl: Duration::from_millis(self.parsed(
                "READY_CACHE_MS",
                u64::try_from(crate::health::DEFAULT_CACHE_TTL.as_millis()).unwrap_or(1000),
            )?),
            port: self.parsed("PORT", 8080u16)?,
            app_version: self
                .optional("APP_VERSION")
                .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_owned()),
            run_worker: bool_var("RUN_WORKER", true)?,
            ai_cache_ttl: Duration::from_secs(self.parsed("AI_CACHE_TTL_SECONDS", 3600u64)?),
            database_max_connections,
            database_min_connections,
            amqp_prefix: {
                let prefix = self
                    .optional("AMQP_PREFIX")
                    .unwrap_or_else(|| "listacompra".to_owned());
                // Queue names are AMQP short strings (255 bytes), the longest being
                // `<prefix>.ai.suggestions.dlq`; lapin panics on longer ones.
                if prefix.len() > MAX_AMQP_PREFIX {
                    return Err(Error::Config {
                        var: "AMQP_PREFIX",
                        reason: format!("must be at most {MAX_AMQP_PREFIX} bytes long"),
                    });
                }
                prefix
            },
            fault: FaultConfig {
                latency: Duration::from_millis(self.parsed("FAULT_LATENCY_MS", 0u64)?),
                error_rate: {
                    let rate: f64 = self.parsed("FAULT_ERROR_RATE", 0.0)?;
                    if !(0.0..=1.0).contains(&rate) {
                        return Err(Error::Config {
                            var: "FAULT_ERROR_RATE",
                            reason: format!("{rate} is not between 0 and 1"),
                        });
                    }
                    rate
                },
                routes: self
                    .optional("FAULT_ROUTES")
                    .map(|v| {
                        v.split(',')
                            .map(|s| s.trim().to_owned())
                            .filter(|s| !s.is_empty())
                            .collect()
                    })
                    .unwrap_or_default(),
            },
            limits: self.limits()?,
            messaging: Messaging {
                offline_fallback: bool_var("AI_OFFLINE_FALLBACK", false)?,
                ..self.messaging()?
            },
            attachments: self.attachments(bool_var("S3_FORCE_PATH_STYLE", false)?)?,
        })
    }

    /// [`Attachments`]: the `S3_*` variables (all but `S3_BUCKET` ignored when it is unset)
    /// and the `ATTACHMENT_*` rules.
    pub fn attachments(&self, path_style: bool) -> Result<Attachments> {
        let d = Attachments::default();
        let s3 = match self.optional("S3_BUCKET") {
            None => None,
            Some(bucket) => {
                let region = self
                    .optional("S3_REGION")
                    .unwrap_or_else(|| "us-east-1".to_owned());
                let endpoint = match self.optional("S3_ENDPOINT") {
                    Some(_) => self.url("S3_ENDPOINT", &["http", "https"])?,
                    None => format!("https://s3.{region}.amazonaws.com"),
                };
                let public_endpoint = match self.optional("S3_PUBLIC_ENDPOINT") {
                    Some(_) => self.url("S3_PUBLIC_ENDPOINT", &["http", "https"])?,
                    None => endpoint.clone(),
                };
                let credential = |var: &'static str| {
                    self.optional(var).ok_or(Error::Config {
                        var,
                        reason: "is required when S3_BUCKET is set (the key of the bucket's \
                                 credentials, from a Secret)"
                            .to_owned(),
                    })
                };
                Some(crate::objects::S3Config {
                    bucket: bucket.trim().to_owned(),
                    endpoint,
                    public_endpoint,
                    region,
                    path_style,
                    access_key_id: credential("S3_ACCESS_KEY_ID")?,
                    secret_access_key: credential("S3_SECRET_ACCESS_KEY")?,
                })
            }
        };
        let types = match self.optional("ATTACHMENT_TYPES") {
            None => d.rules.types.clone(),
            Some(v) => {
                let types: Vec<String> = v
                    .split(',')
                    .map(|t| t.trim().to_ascii_lowercase())
                    .filter(|t| !t.is_empty())
                    .collect();
                if types.is_empty() || types.iter().any(|t| !t.contains('/') || t.contains(';')) {
                    return Err(Error::Config {
                        var: "ATTACHMENT_TYPES",
                        reason: format!(
                            "{v:?} must be a comma-separated list of content types such as \
                             image/png,application/pdf (no parameters)"
                        ),
                    });
                }
                types
            }
        };
        let ttl = self.seconds("ATTACHMENT_URL_TTL_SECONDS", d.url_ttl)?;
        if ttl > Duration::from_secs(604_800) {
            return Err(Error::Config {
                var: "ATTACHMENT_URL_TTL_SECONDS",
                reason: "must be at most 604800 (7 days, the longest a SigV4 URL may live)"
                    .to_owned(),
            });
        }
        let max_bytes: u64 = self.at_least_one("ATTACHMENT_MAX_BYTES", d.rules.max_bytes)?;
        if max_bytes > 5 << 30 {
            return Err(Error::Config {
                var: "ATTACHMENT_MAX_BYTES",
                reason: "must be at most 5368709120 (5 GiB, the largest single S3 PUT)".to_owned(),
            });
        }
        Ok(Attachments {
            s3,
            rules: crate::domain::AttachmentRules {
                max_bytes,
                quota_bytes: self.at_least_one("ATTACHMENT_QUOTA_BYTES", d.rules.quota_bytes)?,
                types,
                max_per_list: self.at_least_one("ATTACHMENT_MAX_PER_LIST", d.rules.max_per_list)?,
            },
            url_ttl: ttl,
        })
    }

    /// `DATABASE_MIN_CONNECTIONS` and `DATABASE_MAX_CONNECTIONS`: at least one connection, and
    /// no more kept open than allowed (the minimum defaults to the maximum: a fixed pool).
    fn pool_size(&self) -> Result<(u32, u32)> {
        let max: u32 = self.at_least_one("DATABASE_MAX_CONNECTIONS", 10)?;
        let min: u32 = self.parsed("DATABASE_MIN_CONNECTIONS", max)?;
        if min > max {
            return Err(Error::Config {
                var: "DATABASE_MIN_CONNECTIONS",
                reason: format!(
                    "{min} is more than DATABASE_MAX_CONNECTIONS ({max}); set it to at most {max}"
                ),
            });
        }
        Ok((min, max))
    }

    /// A count that must be at least 1.
    fn at_least_one<T>(&self, var: &'static str, default: T) -> Result<T>
    where
        T: std::str::FromStr + PartialOrd + From<u8>,
        T::Err: std::fmt::Display,
    {
        let n: T = self.parsed(var, default)?;
        if n < T::from(1u8) {
            return Err(Error::Config {
                var,
                reason: "must be at least 1".to_owned(),
            });
        }
        Ok(n)
    }

    /// [`Messaging`], each value from its variable or its default (`AI_OFFLINE_FALLBACK`
    /// is read with the other booleans in [`Vars::config`]).
    pub fn messaging(&self) -> Result<Messaging> {
        let d = Messaging::default();
        let max_delay_ms: u64 = self.at_least_one(
            "AI_PROVIDER_MAX_DELAY_MS",
            u64::try_from(d.provider_retry.max_delay.as_millis()).unwrap_or(u64::MAX),
        )?;
        Ok(Messaging {
            ai_max_attempts: self.at_least_one("AI_MAX_ATTEMPTS", d.ai_max_attempts)?,
            outbox_max_attempts: self.at_least_one("OUTBOX_MAX_ATTEMPTS", d.outbox_max_attempts)?,
            provider_retry: RetryPolicy {
                retries: self.parsed("AI_PROVIDER_RETRIES", d.provider_retry.retries)?,
                max_delay: std::time::Duration::from_millis(max_delay_ms),
            },
            offline_fallback: d.offline_fallback,
        })
    }

    /// The CA file named by `var`, which only means something for a TLS URL (`tls_scheme`).
    fn ca_file(
        &self,
        var: &'static str,
        url_var: &'static str,
        url: &str,
        tls_scheme: &str,
    ) -> Result<Option<CaFile>> {
        let Some(path) = self.optional(var) else {
            return Ok(None);
        };
        if !url.starts_with(&format!("{tls_scheme}://")) {
            return Err(Error::Config {
                var,
                reason: format!(
                    "is set but {url_var} does not start with {tls_scheme}://, so it would be \
                     ignored. Fix: use a {tls_scheme}:// URL, or unset {var}"
                ),
            });
        }
        CaFile::read(var, path.trim()).map(Some)
    }

    /// How `migrate` waits for locks (`MIGRATION_LOCK_TIMEOUT_MS`, `MIGRATION_LOCK_RETRIES`)
    /// and for a database in recovery (`MIGRATION_RECOVERY_WAIT_SECONDS`).
    pub fn migration_settings(&self) -> Result<crate::migrate::Settings> {
        let d = crate::migrate::Settings::default();
        let ms: u64 = self.parsed(
            "MIGRATION_LOCK_TIMEOUT_MS",
            u64::try_from(d.lock_timeout.as_millis()).unwrap_or(u64::MAX),
        )?;
        if ms == 0 {
            return Err(Error::Config {
                var: "MIGRATION_LOCK_TIMEOUT_MS",
                reason: "must be at least 1 (0 would let DDL queue every request behind it)"
                    .to_owned(),
            });
        }
        Ok(crate::migrate::Settings {
            lock_timeout: Duration::from_millis(ms),
            retries: self.parsed("MIGRATION_LOCK_RETRIES", d.retries)?,
            allow_irreversible: self.parsed("MIGRATION_ALLOW_IRREVERSIBLE", false)?,
            recovery_wait: self.seconds("MIGRATION_RECOVERY_WAIT_SECONDS", d.recovery_wait)?,
            ..d
        })
    }

    /// A duration in whole seconds, at least 1.
    fn seconds(&self, var: &'static str, default: Duration) -> Result<Duration> {
        let secs: u64 = self.parsed(var, default.as_secs())?;
        if secs == 0 {
            return Err(Error::Config {
                var,
                reason: "must be at least 1 (seconds)".to_owned(),
            });
        }
        Ok(Duration::from_secs(secs))
    }

    /// [`Limits`], each value from its variable or its default.
    pub fn limits(&self) -> Result<Limits> {
        let d = Limits::default();
        Ok(Limits {
            header_read_timeout: self
                .seconds("HTTP_HEADER_READ_TIMEOUT_SECONDS", d.header_read_timeout)?,
            idle_timeout: self.seconds("HTTP_IDLE_TIMEOUT_SECONDS", d.idle_timeout)?,
            body_read_timeout: self
                .seconds("HTTP_BODY_READ_TIMEOUT_SECONDS", d.body_read_timeout)?,
            request_timeout: {
                let timeout = self.seconds("HTTP_REQUEST_TIMEOUT_SECONDS", d.request_timeout)?;
                let idle = self.seconds("HTTP_IDLE_TIMEOUT_SECONDS", d.idle_timeout)?;
                if timeout >= idle {
                    return Err(Error::Config {
                        var: "HTTP_REQUEST_TIMEOUT_SECONDS",
                        reason: format!(
                            "must be below HTTP_IDLE_TIMEOUT_SECONDS ({}), or the connection \
                             is cut before the request's answer",
                            idle.as_secs()
                        ),
                    });
                }
                timeout
            },
            hash_concurrency: {
                let n: usize = self.parsed("PASSWORD_HASH_CONCURRENCY", d.hash_concurrency)?;
                if n == 0 {
                    return Err(Error::Config {
                        var: "PASSWORD_HASH_CONCURRENCY",
                        reason: "must be at least 1".to_owned(),
                    });
                }
                n
            },
            hash_queue_timeout: Duration::from_millis(self.parsed(
                "PASSWORD_HASH_QUEUE_TIMEOUT_MS",
                u64::try_from(d.hash_queue_timeout.as_millis()).unwrap_or(u64::MAX),
            )?),
            rate: RateLimitConfig {
                auth_per_address: self.parsed(
                    "RATE_LIMIT_AUTH_PER_ADDRESS_PER_MINUTE",
                    d.rate.auth_per_address,
                )?,
                auth_per_account: self.parsed(
                    "RATE_LIMIT_AUTH_PER_ACCOUNT_PER_MINUTE",
                    d.rate.auth_per_account,
                )?,
                suggestions_per_user: self.parsed(
                    "RATE_LIMIT_SUGGESTIONS_PER_USER_PER_MINUTE",
                    d.rate.suggestions_per_user,
                )?,
                delay: {
                    let ms: u64 = self.parsed(
                        "RATE_LIMIT_DELAY_MS",
                        u64::try_from(d.rate.delay.as_millis()).unwrap_or(u64::MAX),
                    )?;
                    let delay = Duration::from_millis(ms);
                    let idle = self.seconds("HTTP_IDLE_TIMEOUT_SECONDS", d.idle_timeout)?;
                    if delay >= idle {
                        return Err(Error::Config {
                            var: "RATE_LIMIT_DELAY_MS",
                            reason: format!(
                                "must be below HTTP_IDLE_TIMEOUT_SECONDS ({} s), or the held \
                                 connection is cut before its 429",
                                idle.as_secs()
                            ),
                        });
                    }
                    if delay > crate::ratelimit::MAX_DELAY {
                        return Err(Error::Config {
                            var: "RATE_LIMIT_DELAY_MS",
                            reason: format!(
                                "must be at most {} (0 answers 429 at once)",
                                crate::ratelimit::MAX_DELAY.as_millis()
                            ),
                        });
                    }
                    delay
                },
                delay_slots: {
                    let slots: usize = self.parsed("RATE_LIMIT_DELAY_SLOTS", d.rate.delay_slots)?;
                    if slots > crate::ratelimit::MAX_DELAY_SLOTS {
                        return Err(Error::Config {
                            var: "RATE_LIMIT_DELAY_SLOTS",
                            reason: format!(
                                "must be at most {}",
                                crate::ratelimit::MAX_DELAY_SLOTS
                            ),
                        });
                    }
                    slots
                },
            },
            trusted_proxy_hops: self.parsed("TRUSTED_PROXY_HOPS", d.trusted_proxy_hops)?,
            caps: Caps {
                items_per_list: self.at_least_one("MAX_ITEMS_PER_LIST", d.caps.items_per_list)?,
                members_per_list: self
                    .at_least_one("MAX_MEMBERS_PER_LIST", d.caps.members_per_list)?,
                lists_per_user: self.at_least_one("MAX_LISTS_PER_USER", d.caps.lists_per_user)?,
            },
            max_body_bytes: self.parsed("HTTP_MAX_BODY_BYTES", d.max_body_bytes)?,
        })
    }
}

/// The process environment.
pub fn env_vars() -> Vars<impl Fn(&str) -> Option<String>> {
    Vars(|k: &str| std::env::var(k).ok())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vars<impl Fn(&str) -> Option<String>> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Vars(move |k: &str| map.get(k).cloned())
    }

    const GOOD: &[(&str, &str)] = &[
        ("DATABASE_URL", "postgres://u:p@h/db"),
        ("REDIS_URL", "redis://h/0"),
        ("RABBITMQ_URL", "amqp://g:g@h/%2f"),
        ("JWT_SECRET", "0123456789abcdef0123456789abcdef"),
    ];

    #[test]
    fn limits_have_defaults_and_reject_zero_timeouts() {
        assert_eq!(vars(GOOD).config().unwrap().limits, Limits::default());
        let mut env = GOOD.to_vec();
        env.push(("HTTP_HEADER_READ_TIMEOUT_SECONDS", "3"));
        env.push(("HTTP_BODY_READ_TIMEOUT_SECONDS", "4"));
        let limits = vars(&env).config().unwrap().limits;
        assert_eq!(limits.header_read_timeout, Duration::from_secs(3));
        assert_eq!(limits.body_read_timeout, Duration::from_secs(4));
        env.push(("PASSWORD_HASH_CONCURRENCY", "2"));
        env.push(("PASSWORD_HASH_QUEUE_TIMEOUT_MS", "500"));
        env.push(("RATE_LIMIT_AUTH_PER_ADDRESS_PER_MINUTE", "0"));
        env.push(("RATE_LIMIT_AUTH_PER_ACCOUNT_PER_MINUTE", "5"));
        env.push(("RATE_LIMIT_SUGGESTIONS_PER_USER_PER_MINUTE", "7"));
        env.push(("TRUSTED_PROXY_HOPS", "1"));
        let limits = vars(&env).config().unwrap().limits;
        assert_eq!(limits.hash_concurrency, 2);
        assert_eq!(limits.hash_queue_timeout, Duration::from_millis(500));
        assert_eq!(
            limits.rate,
            RateLimitConfig {
                auth_per_address: 0,
                auth_per_account: 5,
                suggestions_per_user: 7,
                ..RateLimitConfig::default()
            }
        );
        let mut env = GOOD.to_vec();
        env.push(("RATE_LIMIT_DELAY_MS", "250"));
        env.push(("RATE_LIMIT_DELAY_SLOTS", "8"));
        let rate = vars(&env).config().unwrap().limits.rate;
        assert_eq!(
            (rate.delay, rate.delay_slots),
            (Duration::from_millis(250), 8)
        );
        let mut env = GOOD.to_vec();
        env.push(("RATE_LIMIT_DELAY_MS", "10001"));
        let err = vars(&env).config().unwrap_err().to_string();
        assert!(err.contains("RATE_LIMIT_DELAY_MS"), "{err}");
        let mut env = GOOD.to_vec();
        env.push(("HTTP_IDLE_TIMEOUT_SECONDS", "5"));
        env.push(("HTTP_REQUEST_TIMEOUT_SECONDS", "4"));
        env.push(("RATE_LIMIT_DELAY_MS", "6000"));
        let err = vars(&env).config().unwrap_err().to_string();
        assert!(
            err.contains("RATE_LIMIT_DELAY_MS") && err.contains("HTTP_IDLE_TIMEOUT_SECONDS"),
            "{err}"
        );
        let mut env = GOOD.to_vec();
        env.push(("RATE_LIMIT_DELAY_SLOTS", "99999999999999"));
        let err = vars(&env).config().unwrap_err().to_string();
        assert!(err.contains("RATE_LIMIT_DELAY_SLOTS"), "{err}");
        assert_eq!(limits.trusted_proxy_hops, 1);
        let mut env = GOOD.to_vec();
        env.push(("MAX_ITEMS_PER_LIST", "5"));
        env.push(("MAX_MEMBERS_PER_LIST", "6"));
        env.push(("MAX_LISTS_PER_USER", "7"));
        env.push(("HTTP_MAX_BODY_BYTES", "2048"));
        let limits = vars(&env).config().unwrap().limits;
        assert_eq!(
            limits.caps,
            Caps {
                items_per_list: 5,
                members_per_list: 6,
                lists_per_user: 7
            }
        );
        assert_eq!(limits.max_body_bytes, 2048);
        for cap in [
            "MAX_ITEMS_PER_LIST",
            "MAX_MEMBERS_PER_LIST",
            "MAX_LISTS_PER_USER",
        ] {
            let mut env = GOOD.to_vec();
            env.push((cap, "0"));
            let err = vars(&env).config().unwrap_err().to_string();
            assert!(err.contains(cap) && err.contains("at least 1"), "{err}");
        }
        let mut env = GOOD.to_vec();
        env.push(("PASSWORD_HASH_CONCURRENCY", "0"));
        let err = vars(&env).config().unwrap_err().to_string();
        assert!(err.contains("PASSWORD_HASH_CONCURRENCY"), "{err}");
        let mut env = GOOD.to_vec();
        env.push(("HTTP_REQUEST_TIMEOUT_SECONDS", "30"));
        let err = vars(&env).config().unwrap_err().to_string();
        assert!(
            err.contains("HTTP_REQUEST_TIMEOUT_SECONDS")
                && err.contains("HTTP_IDLE_TIMEOUT_SECONDS"),
            "{err}"
        );
        env.push(("HTTP_IDLE_TIMEOUT_SECONDS", "40"));
        let limits = vars(&env).config().unwrap().limits;
        assert_eq!(limits.request_timeout, Duration::from_secs(30));
        let mut env = GOOD.to_vec();
        env.push(("HTTP_BODY_READ_TIMEOUT_SECONDS", "0"));
        let err = vars(&env).config().unwrap_err().to_string();
        assert!(err.contains("HTTP_BODY_READ_TIMEOUT_SECONDS"), "{err}");
    }

    #[test]
    fn a_complete_environment_loads_with_defaults() {
        let config = vars(GOOD).config().unwrap();
        assert_eq!(config.port, 8080);
        assert_eq!(config.app_version, env!("CARGO_PKG_VERSION"));
        assert!(config.run_worker);
        assert!(config.pplx_api_key.is_none());
        assert!(!config.fault.enabled());
    }

    #[test]
    fn each_missing_or_bad_variable_is_named() {
        for (var, bad) in [
            ("DATABASE_URL", ""),
            ("DATABASE_URL", "mysql://x"),
            ("REDIS_URL", "http://x"),
            ("RABBITMQ_URL", ""),
            ("JWT_SECRET", "short"),
            ("PORT", "eighty"),
            ("FAULT_ERROR_RATE", "1.5"),
            ("RUN_WORKER", "maybe"),
            ("AMQP_PREFIX", &"p".repeat(201)),
        ] {
            let mut pairs: Vec<(&str, &str)> =
                GOOD.iter().copied().filter(|(k, _)| *k != var).collect();
            pairs.push((var, bad));
            let err = vars(&pairs).config().unwrap_err().to_string();
            assert!(err.contains(var), "{var}={bad:?} gave {err}");
        }
    }

    #[test]
    fn messaging_bounds_have_defaults_and_reject_zero_attempts() {
        assert_eq!(vars(GOOD).config().unwrap().messaging, Messaging::default());
        let mut env = GOOD.to_vec();
        env.extend([
            ("AI_MAX_ATTEMPTS", "3"),
            ("OUTBOX_MAX_ATTEMPTS", "7"),
            ("AI_PROVIDER_RETRIES", "0"),
            ("AI_PROVIDER_MAX_DELAY_MS", "2500"),
            ("AI_OFFLINE_FALLBACK", "true"),
        ]);
        let m = vars(&env).config().unwrap().messaging;
        assert_eq!(m.ai_max_attempts, 3);
        assert_eq!(m.outbox_max_attempts, 7);
        assert_eq!(m.provider_retry.retries, 0);
        assert_eq!(m.provider_retry.max_delay, Duration::from_millis(2500));
        assert!(m.offline_fallback);
        for (var, bad) in [
            ("AI_MAX_ATTEMPTS", "0"),
            ("OUTBOX_MAX_ATTEMPTS", "0"),
            ("AI_PROVIDER_RETRIES", "-1"),
            ("AI_PROVIDER_MAX_DELAY_MS", "0"),
            ("AI_OFFLINE_FALLBACK", "perhaps"),
        ] {
            let mut env = GOOD.to_vec();
            env.push((var, bad));
            let err = vars(&env).config().unwrap_err().to_string();
            assert!(err.contains(var), "{var}={bad:?} gave {err}");
        }
    }

    #[test]
    fn jwt_secrets_need_32_bytes_and_the_token_lifetime_is_bounded() {
        fn with(extra: &[(&str, &str)]) -> Result<Config> {
            let mut env: Vec<(&str, &str)> = GOOD
                .iter()
                .copied()
                .filter(|(k, _)| !extra.iter().any(|(e, _)| e == k))
                .collect();
            env.extend_from_slice(extra);
            vars(&env).config()
        }
        let thirty_one = "0123456789abcdef0123456789abcde";
        let thirty_two = "0123456789abcdef0123456789abcdef";
        for (var, value) in [
            ("JWT_SECRET", thirty_one),
            ("JWT_SECRET_PREVIOUS", thirty_one),
        ] {
            let err = with(&[(var, value)]).unwrap_err().to_string();
            assert!(err.contains(&format!("variable {var}:")), "{err}");
            assert!(err.contains("32 bytes"), "{err}");
            assert!(err.contains("openssl rand -base64 48"), "{err}");
        }
        let config = with(&[
            ("JWT_SECRET", thirty_two),
            ("JWT_SECRET_PREVIOUS", thirty_two),
        ])
        .unwrap();
        assert_eq!(config.jwt_secret_previous.as_deref(), Some(thirty_two));
        assert_eq!(config.jwt_ttl, Duration::from_secs(3600));
        for bad in ["59", "86401", "0"] {
            let err = with(&[("JWT_TTL_SECONDS", bad)]).unwrap_err().to_string();
            assert!(err.contains("JWT_TTL_SECONDS"), "{bad}: {err}");
            assert!(err.contains("60") && err.contains("86400"), "{bad}: {err}");
        }
        for good in [60u64, 86_400] {
            let ttl = good.to_string();
            let config = with(&[("JWT_TTL_SECONDS", ttl.as_str())]).unwrap();
            assert_eq!(config.jwt_ttl, Duration::from_secs(good));
        }
    }

    #[test]
    fn ca_files_are_read_at_start_up_and_need_a_tls_url() {
        let dir = std::env::temp_dir().join(format!("lc-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("ca.pem");
        std::fs::write(
            &good,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate").unwrap();
        let (good, empty) = (good.to_str().unwrap(), empty.to_str().unwrap());
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut pairs: Vec<(&str, &str)> = GOOD
                .iter()
                .copied()
                .filter(|(k, _)| !extra.iter().any(|(e, _)| e == k))
                .collect();
            pairs.extend_from_slice(extra);
            vars(&pairs).config()
        };
        let good: &'static str = Box::leak(good.to_owned().into_boxed_str());
        let empty: &'static str = Box::leak(empty.to_owned().into_boxed_str());
        let config = with(&[
            ("REDIS_URL", "rediss://h:6380/0"),
            ("REDIS_CA_FILE", good),
            ("RABBITMQ_URL", "amqps://g:g@h/%2f"),
            ("RABBITMQ_CA_FILE", good),
        ])
        .unwrap();
        assert_eq!(config.redis_ca.as_ref().unwrap().var, "REDIS_CA_FILE");
        assert!(
            config
                .rabbitmq_ca
                .unwrap()
                .pem
                .contains("BEGIN CERTIFICATE")
        );
        assert!(vars(GOOD).config().unwrap().redis_ca.is_none());
        for (extra, var) in [
            (
                vec![
                    ("REDIS_URL", "rediss://h/0"),
                    ("REDIS_CA_FILE", "/nonexistent/ca.pem"),
                ],
                "REDIS_CA_FILE",
            ),
            (
                vec![("REDIS_URL", "rediss://h/0"), ("REDIS_CA_FILE", empty)],
                "REDIS_CA_FILE",
            ),
            (vec![("REDIS_CA_FILE", good)], "REDIS_CA_FILE"),
            (vec![("RABBITMQ_CA_FILE", good)], "RABBITMQ_CA_FILE"),
        ] {
            let err = with(&extra).unwrap_err().to_string();
            assert!(err.contains(var), "{extra:?}: {err}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn migration_lock_settings_have_defaults_and_reject_zero() {
        let d = crate::migrate::Settings::default();
        assert_eq!(vars(&[]).migration_settings().unwrap(), d);
        let s = vars(&[
            ("MIGRATION_LOCK_TIMEOUT_MS", "50"),
            ("MIGRATION_LOCK_RETRIES", "3"),
        ])
        .migration_settings()
        .unwrap();
        assert_eq!(s.lock_timeout, Duration::from_millis(50));
        assert_eq!(s.retries, 3);
        assert!(!s.allow_irreversible, "refused unless asked for");
        let allowed = vars(&[("MIGRATION_ALLOW_IRREVERSIBLE", "true")])
            .migration_settings()
            .unwrap();
        assert!(allowed.allow_irreversible);
        for (var, bad) in [
            ("MIGRATION_LOCK_TIMEOUT_MS", "0"),
            ("MIGRATION_LOCK_TIMEOUT_MS", "soon"),
            ("MIGRATION_LOCK_RETRIES", "-1"),
        ] {
            let err = vars(&[(var, bad)])
                .migration_settings()
                .unwrap_err()
                .to_string();
            assert!(err.contains(var), "{err}");
        }
    }

    #[test]
    fn fault_routes_are_split_on_commas() {
        let mut pairs = GOOD.to_vec();
        pairs.push(("FAULT_ROUTES", "/v1/lists, /v1/auth/login"));
        pairs.push(("FAULT_LATENCY_MS", "250"));
        let config = vars(&pairs).config().unwrap();
        assert_eq!(config.fault.routes, vec!["/v1/lists", "/v1/auth/login"]);
        assert_eq!(config.fault.latency, Duration::from_millis(250));
    }

    #[test]
    fn the_pool_keeps_at_most_its_maximum_open() {
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut pairs = GOOD.to_vec();
            pairs.extend_from_slice(extra);
            vars(&pairs).config()
        };
        let config = with(&[]).unwrap();
        assert_eq!(
            (
                config.database_min_connections,
                config.database_max_connections
            ),
            (10, 10)
        );
        let config = with(&[("DATABASE_MAX_CONNECTIONS", "2")]).unwrap();
        assert_eq!(
            (
                config.database_min_connections,
                config.database_max_connections
            ),
            (2, 2)
        );
        let config = with(&[("DATABASE_MIN_CONNECTIONS", "0")]).unwrap();
        assert_eq!(config.database_min_connections, 0);
        let err = with(&[
            ("DATABASE_MIN_CONNECTIONS", "8"),
            ("DATABASE_MAX_CONNECTIONS", "5"),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("DATABASE_MIN_CONNECTIONS") && err.contains("at most 5"),
            "{err}"
        );
        let err = with(&[("DATABASE_MAX_CONNECTIONS", "0")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("DATABASE_MAX_CONNECTIONS"), "{err}");
    }
}
