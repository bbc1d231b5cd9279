//! Configuration from the environment (and a `.env` file for local use).
//!
//! A missing or invalid value stops start-up with one message naming the variable.

use std::time::Duration;

use crate::domain::Caps;
use crate::fault::FaultConfig;
use crate::ratelimit::RateLimitConfig;
use crate::{Error, Result};

/// Everything `serve` and `worker` need.
#[derive(Clone)]
pub struct Config {
    /// `DATABASE_URL` (PostgreSQL).
    pub database_url: String,
    /// `REDIS_URL`.
    pub redis_url: String,
    /// `RABBITMQ_URL` (AMQP 0-9-1).
    pub rabbitmq_url: String,
    /// `JWT_SECRET`, at least 16 bytes.
    pub jwt_secret: String,
    /// `JWT_TTL_SECONDS`, default 3600.
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
    /// `DATABASE_MAX_CONNECTIONS`, default 20.
    pub database_max_connections: u32,
    /// `AMQP_PREFIX`, default `listacompra`: exchange and queue names start with it.
    pub amqp_prefix: String,
    /// Fault injection (`FAULT_LATENCY_MS`, `FAULT_ERROR_RATE`, `FAULT_ROUTES`).
    pub fault: FaultConfig,
    /// What one client may cost the server (timeouts, limits); see [`Limits`].
    pub limits: Limits,
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
        if jwt_secret.len() < 16 {
            return Err(Error::Config {
                var: "JWT_SECRET",
                reason: "must be at least 16 bytes long".to_owned(),
            });
        }
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
        Ok(Config {
            database_url: self.database_url()?,
            redis_url: self.url("REDIS_URL", &["redis", "rediss"])?,
            rabbitmq_url: self.url("RABBITMQ_URL", &["amqp", "amqps"])?,
            jwt_secret,
            jwt_ttl: Duration::from_secs(self.parsed("JWT_TTL_SECONDS", 3600u64)?),
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
            database_max_connections: self.parsed("DATABASE_MAX_CONNECTIONS", 20u32)?,
            amqp_prefix: self
                .optional("AMQP_PREFIX")
                .unwrap_or_else(|| "listacompra".to_owned()),
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
            },
            trusted_proxy_hops: self.parsed("TRUSTED_PROXY_HOPS", d.trusted_proxy_hops)?,
            caps: Caps {
                items_per_list: self.parsed("MAX_ITEMS_PER_LIST", d.caps.items_per_list)?,
                members_per_list: self.parsed("MAX_MEMBERS_PER_LIST", d.caps.members_per_list)?,
                lists_per_user: self.parsed("MAX_LISTS_PER_USER", d.caps.lists_per_user)?,
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
        ("JWT_SECRET", "0123456789abcdef"),
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
                suggestions_per_user: 7
            }
        );
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
        let mut env = GOOD.to_vec();
        env.push(("PASSWORD_HASH_CONCURRENCY", "0"));
        let err = vars(&env).config().unwrap_err().to_string();
        assert!(err.contains("PASSWORD_HASH_CONCURRENCY"), "{err}");
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
        ] {
            let mut pairs: Vec<(&str, &str)> =
                GOOD.iter().copied().filter(|(k, _)| *k != var).collect();
            pairs.push((var, bad));
            let err = vars(&pairs).config().unwrap_err().to_string();
            assert!(err.contains(var), "{var}={bad:?} gave {err}");
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
}
