//! The one error type of the service (outside the HTTP edge, see [`crate::http::ApiError`]).

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong outside request validation, with the context it happened in.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration variable is missing or invalid; names the variable.
    #[error("configuration variable {var}: {reason}")]
    Config {
        /// The environment variable.
        var: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A PostgreSQL operation failed.
    #[error("PostgreSQL: {context}: {source}")]
    Database {
        /// What was being done.
        context: &'static str,
        /// The driver error.
        #[source]
        source: sqlx::Error,
    },
    /// A migration failed.
    #[error("migration: {context}: {source}")]
    Migrate {
        /// What was being done.
        context: String,
        /// The migrator error.
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// The database stayed in recovery (read-only) longer than the migration waits for it.
    #[error(
        "migration: the database is in recovery (read-only: a restore or a standby not yet \
         promoted) and did not take writes within {waited_secs} s \
         (MIGRATION_RECOVERY_WAIT_SECONDS). Fix: let its recovery finish, or promote it \
         (SELECT pg_promote()), then migrate again"
    )]
    DatabaseInRecovery {
        /// Seconds waited.
        waited_secs: u64,
    },
    /// A migration step kept waiting longer than `lock_timeout` for a lock, on every attempt.
    #[error(
        "migration: {context}: gave up after {attempts} attempt(s), each waiting at most \
         {lock_timeout_ms} ms (MIGRATION_LOCK_TIMEOUT_MS) for a lock another session holds: \
         {source}. Fix: end the long-running transaction or DDL holding it (see pg_stat_activity \
         and pg_locks), or allow more attempts with MIGRATION_LOCK_RETRIES"
    )]
    MigrationLockTimeout {
        /// What was being done.
        context: String,
        /// Attempts made.
        attempts: u32,
        /// The session's `lock_timeout`.
        lock_timeout_ms: u128,
        /// The last attempt's error.
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// Going down would revert a revision whose down step loses data.
    #[error(
        "IrreversibleMigration: revision {revision} cannot be reverted: {why}. Nothing was \
         changed: the schema stays at revision {current} (older builds run on newer \
         revisions). To go back to revision {target}, restore the database from a backup taken \
         before revision {revision} was applied (a release's status.snapshot names the one taken \
         before its migration), or set MIGRATION_ALLOW_IRREVERSIBLE=true where its data may be lost"
    )]
    IrreversibleMigration {
        /// The revision whose down step loses data.
        revision: i64,
        /// What reverting it loses.
        why: String,
        /// The database's revision.
        current: i64,
        /// The revision asked for.
        target: i64,
    },
    /// The requested schema revision does not exist.
    #[error("unknown schema revision {requested}; known revisions: 0 (empty) and {known:?}")]
    UnknownRevision {
        /// The revision asked for.
        requested: i64,
        /// The revisions this binary knows.
        known: Vec<i64>,
    },
    /// The database is at a revision this binary does not know (a newer release migrated it).
    #[error(
        "the database is at schema revision {current}, newer than this binary knows (up to {head}); \
         move it with the image of the release that introduced revision {current}, e.g. `migrate --to {head}`"
    )]
    NewerSchema {
        /// The database's revision.
        current: i64,
        /// The newest revision this binary knows.
        head: i64,
    },
    /// The database lacks something this binary needs: it is at an older schema revision.
    #[error(
        "the database schema is older than this binary needs: {what} arrives with revision {needs}; \
         run `migrate --to {needs}` (or newer) with this release's image first"
    )]
    SchemaTooOld {
        /// What is missing (a table or column).
        what: &'static str,
        /// The revision that adds it.
        needs: i64,
    },
    /// A Redis operation failed.
    #[error("Redis: {context}: {source}")]
    Redis {
        /// What was being done.
        context: &'static str,
        /// The client error.
        #[source]
        source: redis::RedisError,
    },
    /// A RabbitMQ operation failed.
    #[error("RabbitMQ: {context}: {source}")]
    Amqp {
        /// What was being done.
        context: &'static str,
        /// The client error.
        #[source]
        source: lapin::Error,
    },
    /// The broker did not confirm a publish (nack or returned).
    #[error("RabbitMQ did not confirm event {event_id}")]
    NotConfirmed {
        /// The event.
        event_id: uuid::Uuid,
    },
    /// A message can never be published as it is (checked before sending).
    #[error("event {event_id} cannot be published: {reason}")]
    Unpublishable {
        /// The event.
        event_id: uuid::Uuid,
        /// Why.
        reason: String,
    },
    /// The AI provider failed.
    #[error("AI provider {provider}: {reason}")]
    Provider {
        /// Which provider.
        provider: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// The AI provider is unavailable for now (429, 5xx, timeout, no connection): worth
    /// retrying, after `retry_after` when it said so.
    #[error("AI provider {provider}: {reason}")]
    ProviderUnavailable {
        /// Which provider.
        provider: &'static str,
        /// What went wrong.
        reason: String,
        /// The pause its `Retry-After` header asked for.
        retry_after: Option<std::time::Duration>,
    },
    /// A step of the smoke test (`listacompra-api smoke`) failed.
    #[error("smoke test failed at step {step:?}: {message}")]
    Smoke {
        /// The step.
        step: &'static str,
        /// What the API answered, or why no answer came.
        message: String,
    },
    /// The object store (S3) failed or answered unexpectedly.
    #[error("object store: {context}: {reason}")]
    ObjectStore {
        /// What was being done.
        context: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// JSON (de)serialisation of stored data failed.
    #[error("JSON: {context}: {source}")]
    Json {
        /// What was being done.
        context: &'static str,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
    /// Prometheus registry problem (duplicate or invalid metric).
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// Password hashing or token signing failed.
    #[error("crypto: {0}")]
    Crypto(String),
    /// Stored or seeded data breaks an invariant (for example an unknown role).
    #[error("data: {0}")]
    Data(String),
    /// A bounded resource is saturated (for example every password-hashing permit is taken
    /// and none came free within the queue timeout); the request may be retried (503).
    #[error("{what} is at its limit ({limit}); retry in {} s", retry_after.as_secs())]
    Busy {
        /// What is saturated.
        what: &'static str,
        /// The configuration variable that bounds it.
        limit: &'static str,
        /// When to try again.
        retry_after: std::time::Duration,
    },
    /// A task of a long-running process ended while nothing asked it to stop (it panicked,
    /// or returned): the process exits non-zero so that its supervisor restarts it.
    #[error("{task} stopped unexpectedly: {reason}")]
    TaskEnded {
        /// Which task.
        task: &'static str,
        /// Its panic message, or why it returned.
        reason: String,
    },
    /// An I/O error (binding the listener, reading files).
    #[error("I/O: {context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Wraps a sqlx error with context.
    pub fn db(context: &'static str) -> impl FnOnce(sqlx::Error) -> Self {
        move |source| Self::Database { context, source }
    }

    /// True for a provider that is unavailable for now (see [`Error::ProviderUnavailable`]).
    pub fn is_provider_unavailable(&self) -> bool {
        matches!(self, Self::ProviderUnavailable { .. })
    }

    /// The pause the provider asked for (`Retry-After`), if any.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Self::ProviderUnavailable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// True when PostgreSQL could not be reached at all (connection, pool, TLS): no fault
    /// of the work being done, which should wait rather than count a failed attempt.
    pub fn is_database_unreachable(&self) -> bool {
        matches!(
            self,
            Self::Database {
                source: sqlx::Error::Io(_)
                    | sqlx::Error::Tls(_)
                    | sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::WorkerCrashed,
                ..
            }
        )
    }

    /// True when the database refused the work for a passing reason: unreachable, a
    /// deadlock or serialization failure (SQLSTATE 40P01, 40001), a statement ended by its
    /// `statement_timeout` (57014), a lock not granted in time (55P03), or the connection
    /// ended by the server ([`connection_ended`]). Trying again later may succeed, so HTTP
    /// answers 503, not 500. (Only the unreachable kinds make background work wait without
    /// counting an attempt: a statement an administrator ended again and again should run
    /// out of attempts.)
    pub fn is_database_transient(&self) -> bool {
        if self.is_database_unreachable() {
            return true;
        }
        let Self::Database {
            source: sqlx::Error::Database(db),
            ..
        } = self
        else {
            return false;
        };
        db.code().is_some_and(|code| {
            matches!(code.as_ref(), "40P01" | "40001" | "57014" | "55P03")
                || connection_ended(&code)
        })
    }

    /// Wraps a Redis error with context.
    pub fn redis(context: &'static str) -> impl FnOnce(redis::RedisError) -> Self {
        move |source| Self::Redis { context, source }
    }

    /// Wraps a lapin error with context.
    pub fn amqp(context: &'static str) -> impl FnOnce(lapin::Error) -> Self {
        move |source| Self::Amqp { context, source }
    }

    /// Wraps a serde_json error with context.
    pub fn json(context: &'static str) -> impl FnOnce(serde_json::Error) -> Self {
        move |source| Self::Json { context, source }
    }
}

/// Why a use case did not happen: what the HTTP edge turns into a status code.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Input failed validation (422, or 400 for malformed requests).
    #[error(transparent)]
    Invalid(#[from] crate::domain::Invalid),
    /// Malformed request (400), naming the field or `body`.
    #[error("{0}")]
    BadRequest(crate::domain::Invalid),
    /// Missing or invalid credentials (401).
    #[error("unauthorized: {0}")]
    Unauthorized(&'static str),
    /// A bearer token that is forged, expired, signed with an unknown key or revoked (401
    /// with `WWW-Authenticate: Bearer error="invalid_token"`, RFC 6750). One answer for all
    /// of these, so a forger learns nothing about which check failed.
    #[error("unauthorized: the token is invalid, expired or revoked")]
    InvalidToken,
    /// The caller sees the resource but may not do this (403).
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    /// Not there, or not visible to the caller (404).
    #[error("not found: {0}")]
    NotFound(&'static str),
    /// Conflicts with the current state (409).
    #[error("conflict: {0}")]
    Conflict(String),
    /// One more would exceed a cap (409), naming it.
    #[error("{} reached: at most {} {}", .0.limit, .0.max, .0.what)]
    CapReached(crate::domain::CapReached),
    /// Over a rate limit (429 with Retry-After), naming the limit.
    #[error("rate limited by {}", .0.limit)]
    RateLimited(crate::ratelimit::Limited),
    /// A bounded resource is full (503 with Retry-After), naming the limit.
    #[error("overloaded: {what} ({limit})")]
    Overloaded {
        /// What is saturated.
        what: &'static str,
        /// The configuration variable that bounds it.
        limit: &'static str,
        /// When to try again.
        retry_after: std::time::Duration,
    },
    /// A feature this server is not configured for (501), naming the configuration.
    #[error("not implemented: {0}")]
    NotConfigured(&'static str),
    /// The server cannot serve this now and says why (503), e.g. its database is at an
    /// older schema revision than it needs; logged.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Our fault (500); logged, never shown in detail.
    #[error(transparent)]
    Internal(Error),
}

impl From<Error> for AppError {
    /// A saturated resource is the client's cue to come back later (503); anything else is
    /// our fault (500).
    fn from(err: Error) -> Self {
        match err {
            Error::Busy {
                what,
                limit,
                retry_after,
            } => Self::Overloaded {
                what,
                limit,
                retry_after,
            },
            err @ (Error::SchemaTooOld { .. } | Error::ObjectStore { .. }) => {
                Self::Unavailable(err.to_string())
            }
            err if err.is_database_transient() => {
                tracing::warn!(error = %err, "request refused: the database could not do it now");
                Self::Unavailable(
                    "the database could not do it now (unreachable, a deadlock or a timeout); \
                     try again"
                        .to_owned(),
                )
            }
            other => Self::Internal(other),
        }
    }
}

/// Whether SQLSTATE `code` says the server ended or refused the connection: the connection
/// exceptions of class 08 that are not a protocol violation (08000, 08001, 08003, 08004,
/// 08006), and 57P01 to 57P03 (an administrator's `pg_terminate_backend` or a shutdown, a
/// crash, a server still starting).
pub(crate) fn connection_ended(code: &str) -> bool {
    matches!(
        code,
        "08000" | "08001" | "08003" | "08004" | "08006" | "57P01" | "57P02" | "57P03"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PostgreSQL error with only a SQLSTATE, as the server sends it.
    #[derive(Debug)]
    struct Sqlstate(&'static str);

    impl std::fmt::Display for Sqlstate {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "SQLSTATE {}", self.0)
        }
    }

    impl std::error::Error for Sqlstate {}

    impl sqlx::error::DatabaseError for Sqlstate {
        fn message(&self) -> &str {
            self.0
        }
        fn code(&self) -> Option<std::borrow::Cow<'_, str>> {
            Some(self.0.into())
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }

    fn database(code: &'static str) -> Error {
        Error::db("reading")(sqlx::Error::Database(Box::new(Sqlstate(code))))
    }

    #[test]
    fn a_connection_the_server_ended_is_transient_but_not_unreachable() {
        for code in [
            "57P01", "57P02", "57P03", "08006", "08003", "40001", "57014",
        ] {
            let e = database(code);
            assert!(e.is_database_transient(), "{code} should answer 503");
            assert!(
                !e.is_database_unreachable(),
                "{code} should count an attempt"
            );
        }
        // A protocol violation or a constraint is a defect of ours or of the input: 500 or
        // the caller's 4xx, never a retry.
        for code in ["08P01", "23505", "42P01"] {
            assert!(!database(code).is_database_transient(), "{code}");
        }
        let io = Error::db("reading")(sqlx::Error::Io(std::io::ErrorKind::BrokenPipe.into()));
        assert!(io.is_database_transient() && io.is_database_unreachable());
    }
}
